//! CPU and memory use of the server under test and of the generator itself,
//! read from `/proc`. Every result line carries them, so a reader can tell a
//! saturated server (near 100% of its core) from a saturated generator.

use std::time::Instant;

use serde_json::{Map, Value, json};

/// The process whose use is reported: the server's pid, or `self`.
#[derive(Clone, Copy)]
enum Process {
    Pid(u32),
    Generator,
}

impl Process {
    fn proc_file(self, name: &str) -> String {
        match self {
            Process::Pid(pid) => format!("/proc/{pid}/{name}"),
            Process::Generator => format!("/proc/self/{name}"),
        }
    }

    /// User plus system CPU time of every thread, in clock ticks.
    fn cpu_ticks(self) -> Option<u64> {
        let stat = std::fs::read_to_string(self.proc_file("stat")).ok()?;
        // The command name in parentheses may hold spaces; fields count from
        // after it. utime and stime are fields 14 and 15 of stat(5), the 12th
        // and 13th after the name.
        let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
        let utime: u64 = fields.next()?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        Some(utime + stime)
    }

    /// Resident memory in KiB (`VmRSS`).
    fn rss_kb(self) -> Option<u64> {
        let status = std::fs::read_to_string(self.proc_file("status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

/// Busy time of all CPUs together, in clock ticks: everything but idle and
/// iowait in the `cpu` line of `/proc/stat`.
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map_while(|f| f.parse().ok())
        .collect();
    let (idle, iowait) = (ticks.get(3)?, ticks.get(4)?);
    Some(ticks.iter().take(8).sum::<u64>() - idle - iowait)
}

/// The resident memory of the server, in KiB, when its pid is known.
pub fn server_rss_kb(server_pid: Option<u32>) -> Option<u64> {
    Process::Pid(server_pid?).rss_kb()
}

/// CPU time of the server and the generator from one instant on.
pub struct Meter {
    server_pid: Option<u32>,
    server_ticks: Option<u64>,
    generator_ticks: Option<u64>,
    machine_ticks: Option<u64>,
    started: Instant,
}

impl Meter {
    /// Starts measuring now.
    pub fn start(server_pid: Option<u32>) -> Meter {
        Meter {
            server_pid,
            server_ticks: server_pid.and_then(|pid| Process::Pid(pid).cpu_ticks()),
            generator_ticks: Process::Generator.cpu_ticks(),
            machine_ticks: machine_busy_ticks(),
            started: Instant::now(),
        }
    }

    /// CPU use since `start` as % of one core, and the server's RSS now, as
    /// the fields `server_cpu_pct`, `server_rss_kb`, `generator_cpu_pct` and
    /// `other_cpu_pct` (absent when they could not be read). `other_cpu_pct`
    /// is what every other process used: more than a few percent means the
    /// run shared its cores and its numbers are suspect.
    pub fn finish(self) -> Map<String, Value> {
        let seconds = self.started.elapsed().as_secs_f64();
        // SAFETY: sysconf has no preconditions.
        let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let pct = |before: Option<u64>, after: Option<u64>| {
            let used = after? - before?;
            Some((used as f64 / ticks_per_s / seconds * 1000.0).round() / 10.0)
        };
        let server_ticks = self.server_pid.and_then(|pid| Process::Pid(pid).cpu_ticks());
        let generator_ticks = Process::Generator.cpu_ticks();
        let machine_ticks = machine_busy_ticks();
        let mut fields = Map::new();
        if let Some(cpu) = pct(self.server_ticks, server_ticks) {
            fields.insert("server_cpu_pct".into(), json!(cpu));
        }
        if let Some(rss) = server_rss_kb(self.server_pid) {
            fields.insert("server_rss_kb".into(), json!(rss));
        }
        if let Some(cpu) = pct(self.generator_ticks, generator_ticks) {
            fields.insert("generator_cpu_pct".into(), json!(cpu));
        }
        let ours = |before: Option<u64>, after: Option<u64>| after.zip(before).map_or(0, |(a, b)| a - b);
        let others = machine_ticks.zip(self.machine_ticks).map(|(after, before)| {
            (after - before)
                .saturating_sub(ours(self.server_ticks, server_ticks) + ours(self.generator_ticks, generator_ticks))
        });
        if let Some(cpu) = pct(Some(0), others) {
            fields.insert("other_cpu_pct".into(), json!(cpu));
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        assert!(Process::Generator.cpu_ticks().is_some());
        assert!(Process::Generator.rss_kb().unwrap() > 0);
        let pid = std::process::id();
        assert!(server_rss_kb(Some(pid)).unwrap() > 0);
        let fields = Meter::start(Some(pid)).finish();
        assert!(fields.contains_key("server_cpu_pct"));
        assert!(fields.contains_key("generator_cpu_pct"));
        assert!(fields.contains_key("other_cpu_pct"));
        assert!(machine_busy_ticks().unwrap() > 0);
    }
}
