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


def test_ann_eval_rescores_saved_runs_under_each_retrieval(tiny, tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import ann_eval

    from recbole_rimirec.quick_start import run

    folder = tmp_path / "bench"
    (folder / "runs").mkdir(parents=True)
    result = run("ComiRecSA", "tiny", config_dict={**tiny, "epochs": 1})
    record = {"dataset": "tiny", "model": "ComiRecSA", "seed": 2020, "checkpoint": result["checkpoint"]}
    (folder / "runs" / "tiny__ComiRecSA__2020.json").write_text(json.dumps(record))
    assert ann_eval.main([str(folder)]) == 0
    rows = json.loads((folder / "ann_eval.json").read_text())["rows"]
    assert [r["retrieval"] for r in rows] == ["full", "exact", "faiss"]
    assert len({r["ndcg@10"] for r in rows}) == 1  # the reference's serving rule is the max-over-interests ranking
    assert rows[1]["library_fraction"] == rows[2]["library_fraction"] > 1  # every interest scans the library
    assert "| ComiRecSA | 2020 | faiss |" in (folder / "ann_eval.md").read_text()
    assert ann_eval.main([str(folder), "--seeds", "1"]) == 2  # nothing to re-score: an error, not an empty table
