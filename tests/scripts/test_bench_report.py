"""scripts/bench-report: the ratio table comes first on stdout, and a
suspect result (the generator at its limit, other load, closed
connections) fails the report with status 3 after the table is written."""

import json
import subprocess
import sys
from pathlib import Path

REPORT = Path(__file__).resolve().parents[2] / "scripts" / "bench-report"


def result(server, scenario, **fields):
    line = {"server": server, "scenario": scenario, "generator_cpu_pct": 40, "other_cpu_pct": 2,
            "closed_early": 0, "errors": 0}
    line.update(fields)
    return line


def run_report(tmp_path, rows):
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text("# Benchmarks\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n\nkept\n")
    done = subprocess.run([sys.executable, str(REPORT), str(results), str(markdown), "-"],
                          capture_output=True, text=True, timeout=60)
    return done, markdown.read_text()


def clean_rows():
    return [
        result("imbed", "direct", messages_per_s=120000),
        result("bun", "direct", messages_per_s=100000),
        result("imbed", "latency", offered_per_s=50000,
               latency_ms={"p50": 0.1, "p99": 0.5, "p99.9": 1.25, "max": 7.5}, messages_per_s=50000),
        result("bun", "latency", offered_per_s=50000, latency_ms={"p99": 0.4}),
    ]


def test_a_clean_run_prints_the_ratio_table_first_and_succeeds(tmp_path):
    done, markdown = run_report(tmp_path, clean_rows())
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("| server | direct messages/s"), done.stdout
    assert "| **imbed** (in memory) | 120,000 (1.20×)" in done.stdout
    assert "old" not in markdown and "kept" in markdown and "120,000 (1.20×)" in markdown
    assert "SUSPECT" not in done.stderr
    # The tail beside p99: p99.9 and the max, in the details table.
    assert "| latency | imbed | 50,000 msg/s | 0.10 | 0.50 | 1.25 | 7.50 |" in markdown, markdown


def test_a_suspect_run_is_written_but_fails_loudly(tmp_path):
    rows = clean_rows()
    rows[1]["generator_cpu_pct"] = 97  # bun direct: the generator at its limit
    rows[2]["other_cpu_pct"] = 35  # imbed latency: other load on the machine
    rows[0]["closed_early"] = 3  # imbed direct: connections closed
    done, markdown = run_report(tmp_path, rows)
    assert done.returncode == 3, (done.returncode, done.stderr)
    assert "3 SUSPECT RESULT(S)" in done.stderr, done.stderr
    assert "bun direct: the generator's core was 90% busy" in done.stderr
    assert "imbed latency: other processes used 10% of a core" in done.stderr
    assert "imbed direct: the server closed connections" in done.stderr
    assert "120,000 (1.20×)" in markdown, "the numbers are written all the same"
    assert done.stdout.splitlines()[0].startswith("| server |")


def issue_18_rows(rss_kb):
    """A run with every row issue 18's table needs, imbed and Bun."""
    return clean_rows() + [
        result("imbed", "room", deliveries_per_s=4_000_000, server_cpu_pct=100),
        result("bun", "room", deliveries_per_s=6_000_000, server_cpu_pct=50),
        result("imbed", "idle", kb_per_connection=1.5),
        result("bun", "idle", kb_per_connection=4.0),
        result("imbed-sqlite", "durable", messages_per_s=90000),
        result("imbed", "rss", interval_s=5, t_s=[5.0 * i for i in range(13)], rss_kb=rss_kb,
               messages_per_s=150000, params={"senders": 400, "seconds": 60}, server_rss_kb=rss_kb[-1],
               command="bench direct --url ws://127.0.0.1:1/ws --server-pid 7 --label imbed --seconds 60"),
    ]


FLAT = [8000, 300000, 400000, 405000, 409000, 410000, 411000, 412000, 413000, 414000, 415000, 416000, 417000]


def test_issue_18_targets_each_with_its_measurement_target_and_verdict(tmp_path):
    rows = issue_18_rows(FLAT)
    rows[0]["latency_ms"] = {"p99": 20.0}  # imbed direct: p99 at saturation
    rows[1]["latency_ms"] = {"p99": 12.0}  # bun direct
    done, markdown = run_report(tmp_path, rows)
    assert done.returncode == 0, done.stderr
    assert "target (issue 7)" not in markdown
    assert "| target (issue 18) | measured | target | |" in markdown
    # 120,000 vs 100,000: 1.2×, below 1.5×.
    assert "| direct messages/s | 1.20× bun (120,000 vs 100,000) | ≥ 1.5× bun | **not met** |" in markdown
    # Per server CPU-second: 4M at 100% against 6M at 50% (12M per CPU-second).
    assert ("| room deliveries per second of server CPU | 0.33× bun (4,000,000 vs 12,000,000) "
            "| ≥ 1.5× bun | **not met** |") in markdown, markdown
    assert "| idle KiB per connection | 0.38× bun (1.5 vs 4.0) | ≤ half of bun's | met |" in markdown
    assert "| p99 at the same offered load (50,000/s) | 1.25× bun (0.50 ms vs 0.40 ms) | ≤ bun's | **not met** |" in markdown
    assert "| p99 at saturation (direct) | 1.67× bun (20.00 ms vs 12.00 ms) | ≤ 2× bun's | met |" in markdown
    assert "| durable (SQLite) direct | 0.75× (90,000 vs 120,000 messages/s) | ≥ 0.6× imbed in memory | met |" in markdown
    # 409,000 KiB at 20 s to 417,000 at 60 s: +1.96%, under 2%.
    assert "| RSS over a 60 s saturating direct run in memory | 399 → 407 MiB from 20 s to 60 s: +1.96% " in markdown
    assert "from 20 s to the end) | met |" in markdown
    # The rule in words, and the samples.
    assert "grows by less than 2% from the sample at 20 s" in markdown
    assert "| s | 0 | 5 | 10 | 15 | 20 | 25 | 30 | 35 | 40 | 45 | 50 | 55 | 60 |" in markdown
    assert "| VmRSS MiB | 8 | 293 | 391 | 396 | 399 |" in markdown
    assert "| rss | imbed | 150,000 msg/s over 60 s |" in markdown


def test_the_room_rate_per_server_cpu_second_beside_the_raw_rate_for_every_server(tmp_path):
    done, markdown = run_report(tmp_path, issue_18_rows(FLAT))
    header = done.stdout.splitlines()[0]
    assert "| room deliveries/s | room deliveries per server CPU-second |" in header, header
    assert "| **imbed** (in memory) | 120,000 (1.20×) | 4,000,000 (0.67×) | 4,000,000 (0.33×) | 1.5 (0.38×) |" in markdown
    assert "| bun | 100,000 (1.00×) | 6,000,000 (1.00×) | 12,000,000 (1.00×) | 4.0 (1.00×) |" in markdown


def test_memory_that_keeps_growing_after_warm_up_is_not_flat(tmp_path):
    growing = [8000 + 20000 * i for i in range(13)]  # 88,000 KiB at 20 s, 248,000 at 60 s
    done, markdown = run_report(tmp_path, issue_18_rows(growing))
    assert done.returncode == 0, done.stderr
    assert "86 → 242 MiB from 20 s to 60 s: +181.82% | flat after warm-up (< 2% growth from 20 s to the end) | **not met** |" in markdown


def test_a_row_without_its_runs_is_not_measured(tmp_path):
    rows = [r for r in clean_rows() if r["server"] != "bun"]
    done, markdown = run_report(tmp_path, rows)
    assert done.returncode == 0, done.stderr
    assert "| direct messages/s | – (no bun run) | ≥ 1.5× bun | not measured |" in markdown
    assert "| RSS over a 60 s saturating direct run in memory | – (no RSS run) |" in markdown


def test_a_peers_own_limit_that_no_target_leans_on_is_named_but_does_not_fail(tmp_path):
    rows = clean_rows() + [
        result("imbed", "room", deliveries_per_s=4000000, server_cpu_pct=100),
        # Bun's room: the generator cannot keep up; the target compares per server CPU-second.
        result("bun", "room", deliveries_per_s=7000000, server_cpu_pct=99, generator_cpu_pct=99),
        # The Go hub drops slow readers by design.
        result("go-hub", "room", deliveries_per_s=300000, server_cpu_pct=100, closed_early=200),
    ]
    done, _ = run_report(tmp_path, rows)
    assert done.returncode == 0, done.stderr
    assert "SUSPECT" not in done.stderr, done.stderr
    assert "noted (no target leans on it): bun room: the generator's core" in done.stderr
    assert "noted (no target leans on it): go-hub room: the server closed" in done.stderr


def test_imbeds_room_at_the_generators_limit_is_noted_but_its_own_errors_fail(tmp_path):
    # The generator cannot read imbed's room as fast as imbed writes it: the
    # target compares per server CPU-second, which that limit does not raise.
    limited = result("imbed", "room", deliveries_per_s=5000000, server_cpu_pct=96, generator_cpu_pct=92)
    done, _ = run_report(tmp_path, clean_rows() + [limited])
    assert done.returncode == 0, done.stderr
    assert "noted (no target leans on it): imbed room: the generator's core" in done.stderr
    closing = dict(limited, closed_early=5)
    done, _ = run_report(tmp_path, clean_rows() + [closing])
    assert done.returncode == 3, done.stderr
    assert "1 SUSPECT RESULT(S)" in done.stderr and "imbed room: the generator's core" in done.stderr


def test_other_load_fails_the_run_even_on_a_peers_room(tmp_path):
    rows = clean_rows() + [result("bun", "room", deliveries_per_s=7000000, server_cpu_pct=99, other_cpu_pct=30)]
    done, _ = run_report(tmp_path, rows)
    assert done.returncode == 3, done.stderr
    assert "1 SUSPECT RESULT(S)" in done.stderr and "bun room: other processes" in done.stderr
