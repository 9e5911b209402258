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
