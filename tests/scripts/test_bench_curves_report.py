"""scripts/bench-curves-report: the curves' tables (CPU per message, room
deliveries per server CPU-second, KiB per connection, durable throughput
against stored messages), which costs grow faster than the work, and a
failed run failing the report after everything is written."""

import json
import subprocess
import sys
from pathlib import Path

REPORT = Path(__file__).resolve().parents[2] / "scripts" / "bench-curves-report"


def run_line(curve, x, server, **fields):
    run = {"generator_cpu_pct": 40, "other_cpu_pct": 1, "closed_early": 0, "errors": 0,
           "params": {"seconds": 10}}
    run.update(fields)
    return {"curve": curve, "x": x, "server": server, "run": run}


def curves():
    return [
        # imbed's CPU per message doubles from 200 to 18,000 connections; Bun's grows 1.2×.
        run_line("direct", 200, "imbed", messages_per_s=200000, server_cpu_pct=100, latency_ms={"p99": 5.0}),
        run_line("direct", 18000, "imbed", messages_per_s=100000, server_cpu_pct=100, latency_ms={"p99": 900.0}),
        run_line("direct", 200, "bun", messages_per_s=200000, server_cpu_pct=100, latency_ms={"p99": 4.0}),
        run_line("direct", 18000, "bun", messages_per_s=150000, server_cpu_pct=90, latency_ms={"p99": 600.0}),
        # Per server CPU-second: imbed 4M then 2M (2× the cost per delivery); Bun 8M then 8M.
        run_line("room", 100, "imbed", deliveries_per_s=4_000_000, server_cpu_pct=100),
        run_line("room", 10000, "imbed", deliveries_per_s=2_000_000, server_cpu_pct=100),
        run_line("room", 100, "bun", deliveries_per_s=6_000_000, server_cpu_pct=75, generator_cpu_pct=99),
        run_line("room", 10000, "bun", deliveries_per_s=4_000_000, server_cpu_pct=50),
        run_line("idle", 200, "imbed", kb_per_connection=6.0, server_rss_kb=20 * 1024),
        run_line("idle", 18000, "imbed", kb_per_connection=5.0, server_rss_kb=110 * 1024),
        run_line("idle", 200, "bun", kb_per_connection=3.0, server_rss_kb=24 * 1024),
        run_line("idle", 18000, "bun", kb_per_connection=2.5, server_rss_kb=70 * 1024),
        run_line("durable", 0, "imbed-sqlite", messages_per_s=70000, server_cpu_pct=80, latency_ms={"p99": 50.0}),
        {"curve": "fill", "x": 1000000, "server": "imbed-sqlite",
         "run": {"scenario": "fill", "messages_before": 0, "messages_added": 1000000, "messages_stored": 1000000,
                 "complete": True, "seconds": 8.0, "messages_per_s": 125000, "file_bytes": 230 * 2**20}},
        run_line("durable", 1000000, "imbed-sqlite", messages_per_s=63000, server_cpu_pct=80,
                 latency_ms={"p99": 60.0}),
    ]


def report(tmp_path, lines, markdown_text=None):
    results = tmp_path / "curves.jsonl"
    results.write_text("".join(json.dumps(line) + "\n" for line in lines))
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text(markdown_text or "# Benchmarks\n\n<!-- bench:begin -->\ntable\n<!-- bench:end -->\n\n"
                        "### Why\n\nkept\n\n## Durable\n\nlast\n")
    done = subprocess.run([sys.executable, str(REPORT), str(results), str(markdown), "-"],
                          capture_output=True, text=True, timeout=60)
    return done, markdown.read_text()


def test_the_tables_give_the_cost_per_unit_of_work_beside_bun(tmp_path):
    done, markdown = report(tmp_path, curves())
    assert done.returncode == 0, done.stderr
    # CPU per message: 1 core / 200,000 = 5 µs; 0.9 / 150,000 = 6 µs.
    assert "| 200 | 200,000 | 5.00 | 5.00 | 200,000 | 4.00 | 5.00 | 1.00× |" in markdown, markdown
    assert "| 18,000 | 100,000 | 900.00 | 10.00 | 150,000 | 600.00 | 6.00 | 1.67× |" in markdown
    # Deliveries per server CPU-second beside the raw rate; Bun's generator at its limit is marked.
    assert "| 100 | 4,000,000 | 100 | 4,000,000 | 6,000,000† | 75† | 8,000,000† | 0.50× |" in markdown
    assert "| 10,000 | 2,000,000 | 100 | 2,000,000 | 4,000,000 | 50 | 8,000,000 | 0.25× |" in markdown
    assert "† the generator's core was 90% busy" in markdown
    assert "| 18,000 | 110 | 5.0 | 70 | 2.5 | 2.00× |" in markdown
    assert "| 1,000,000 | 63,000 | 60.00 | 80 |" in markdown
    assert "- to 1,000,000: 1,000,000 messages added to 0 in 8.0 s (125,000/s), file 230 MiB" in markdown
    # The generator at its limit is named but does not fail the curves.
    assert "room 100 bun" in done.stderr


def test_a_cost_that_grows_faster_than_the_work_is_called_a_bend(tmp_path):
    done, markdown = report(tmp_path, curves())
    findings = done.stdout
    assert ("- Server CPU per message, 200 → 18,000 connections: imbed 5.00 → 10.00 µs (2.00× the cost); "
            "bun 5.00 → 6.00 µs (1.20× the cost). **Bends** for imbed.") in findings, findings
    assert ("- Room deliveries per server CPU-second, 100 → 10,000 members: imbed 4,000,000 → 2,000,000 per CPU-s "
            "(2.00× the cost); bun 8,000,000 → 8,000,000 per CPU-s (1.00× the cost). **Bends** for imbed.") in findings
    assert "imbed 6.0 → 5.0 KiB (0.83× the cost)" in findings
    assert "- Durable messages/s, 0 → 1,000,000 stored messages: imbed-sqlite 70,000 → 63,000 msg/s (1.11× the cost)." in findings
    assert findings.strip() in markdown


def test_the_section_goes_after_the_bench_section_and_is_replaced_in_place(tmp_path):
    done, markdown = report(tmp_path, curves())
    # After the bench section's own subsections, before the next section.
    assert (markdown.index("<!-- bench:end -->") < markdown.index("kept") < markdown.index("<!-- curves:begin -->")
            < markdown.index("<!-- curves:end -->\n\n## Durable"))
    assert "table" in markdown and "## How cost grows" in markdown
    done, again = report(tmp_path, curves()[:4], markdown_text=markdown)
    assert again.count("<!-- curves:begin -->") == 1 and again.count("## How cost grows") == 1
    section = again.split("<!-- curves:begin -->")[1].split("<!-- curves:end -->")[0]
    assert "63,000" not in section and "Room (" not in section and "| 200 | 200,000 |" in section
    assert again.endswith("## Durable\n\nlast\n")


def test_a_failed_run_is_written_and_fails_the_report(tmp_path):
    lines = curves()
    lines[3] = {"curve": "direct", "x": 18000, "server": "bun", "run": {"failed": "the generator exited with status 101"}}
    lines[9]["run"]["closed_early"] = 12  # imbed idle at 18,000
    done, markdown = report(tmp_path, lines)
    assert done.returncode == 3, (done.returncode, done.stderr)
    assert "2 FAILED OR SUSPECT RUN(S)" in done.stderr, done.stderr
    assert "direct 18000 bun: the generator exited with status 101" in done.stderr
    assert "idle 18000 imbed: the server closed connections" in done.stderr
    assert "| 18,000 | 100,000 | 900.00 | 10.00 | failed¶ | failed¶ | failed¶ | – |" in markdown
    assert "- direct 18,000, bun: the generator exited with status 101" in markdown
    assert "| 18,000 | 110§ | 5.0§ |" in markdown
