"""Every benchmark in bench/ runs to the end in a small smoke mode and reports its figures as ratios against
the baseline it measures in the same run, so a change that breaks a bench fails here, not months later."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from ingestflow.app.core import serde

from ..conftest import BASE_ENV, ROOT


def run_bench(name: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    """Run bench/<name>.py as a user would; the results it wrote (the file its `written to ...` line names)."""
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    written = [line for line in (proc.stdout + proc.stderr).splitlines() if "written to" in line]
    assert written, proc.stdout[-2000:] + proc.stderr[-2000:]
    path = Path(written[-1].rsplit("written to ", 1)[1].strip())
    result: dict[str, Any] = serde.loads(path.read_bytes())
    path.unlink()
    return result


def test_archive_bench_reports_its_ratios(services: None) -> None:
    result = run_bench("bench_archive", "--records", "400", "--users", "4", "--buffer", "20")
    assert {b["backend"] for b in result["backends"]} == {"local", "kubo"}
    for backend in result["backends"]:
        assert backend["uploads"] == 400 // 20, backend  # every record archived, in BUFFER_SIZE batches
        assert backend["concurrent_vs_sequential"] > 0 and backend["pipeline_vs_bare_backend"] > 0, backend
    assert 0 < result["crypto"]["envelope_vs_raw"], result["crypto"]


def test_gateway_bench_reports_its_ratios(services: None) -> None:
    result = run_bench("bench_gateway", "--bootstrap", BASE_ENV["KAFKA_BOOTSTRAP_SERVERS"], "--seconds", "0.5",
                       "--levels", "1,2", "--replay", "500")
    assert [level["concurrency"] for level in result["levels"]] == [1, 2]
    for level in result["levels"]:
        assert level["raw"]["events_per_s"] > 0 and level["gateway"]["events_per_s"] > 0, level
        assert level["ratio"] > 0, level
    assert result["replay"]["events"] == 500 and result["replay"]["replay_events_per_s"] > 0, result["replay"]


def test_pipeline_bench_reports_its_ratios(services: None) -> None:
    result = run_bench("bench_pipeline", "--events", "2000", "--backlog")
    (run,) = result["runs"]
    for name in ("raw", "quix", "bare", "faust"):
        assert run[name]["events"] == 2000 and run[name]["events_per_s"] > 0, run[name]
    assert run["same_totals_faust_raw"] is True  # the worker and the raw loop wrote the same day totals
    for ratio in ("ratio_faust_to_raw", "ratio_faust_to_quix", "ratio_bare_to_raw", "ratio_faust_to_bare"):
        assert run[ratio] > 0 and result["summary"][ratio]["min"] == run[ratio], result
    assert result["summary"]["faust_runs_not_caught_up"] == 0 and run["faust"]["watchdog_seeks"] == 0, result


def test_scale_bench_reports_its_ratios(services: None) -> None:
    # Its `state` mode only: its `workers` mode stops the running worker when the second joins during a
    # backlog (docs/benchmarks.md), so it has no stable smoke form yet.
    state = run_bench("bench_scale", "state", "--ids", "2000,4000")
    assert [row["ids"] for row in state["rows"]] == [2000, 4000]
    for row in state["rows"]:
        assert row["rss_mb"] > 0 and row["restart_s"] > 0 and row["rss_ratio"] > 0, row
