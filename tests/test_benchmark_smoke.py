"""The benchmark command runs end to end on the tiny set and writes its report files."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import DATA

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_command_writes_report(tmp_path):
    out = tmp_path / "bench"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "run.py"),
        "--datasets", "tiny",
        "--models", "Pop", "SASRecAllPos",
        "--seeds", "1", "2",
        "--data_path", str(DATA),
        "--out", str(out),
        "--set", "epochs=1", "hidden_size=8", "inner_size=16", "n_layers=1", "n_heads=1", "MAX_ITEM_LIST_LENGTH=10",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True)
    assert len(list((out / "runs").glob("*.json"))) == 4
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert summary["tiny/Pop"]["seeds"] == 2
    table = (out / "table.md").read_text()
    assert "SASRecAllPos" in table and "**" in table
    assert (out / "results.csv").read_text().count("\n") == 5
    before = (out / "runs" / "tiny__Pop__1.json").stat().st_mtime_ns
    subprocess.run(cmd + ["--resume"], check=True, cwd=tmp_path, capture_output=True)
    assert (out / "runs" / "tiny__Pop__1.json").stat().st_mtime_ns == before  # resumed, not rerun
