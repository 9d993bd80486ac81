"""The benchmark command runs end to end on the tiny set and writes its report files."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_selection_coverage_counts_targets_inside_the_selected_nodes():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import numpy as np
    import torch
    from rimirec_analysis import coverage_sweep, selection_coverage

    from recbole_rimirec.tree.itemtree import build_tree
    from recbole_rimirec.tree.tensors import TreeTensors

    tree = TreeTensors(build_tree(np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32), 4, 20, 3, 0))
    target = torch.arange(1, 200)  # every real item once (row 0 is padding)
    every = torch.zeros(199, tree.num_nodes, dtype=torch.bool)
    every[:, 0] = True
    assert selection_coverage(every, tree, target) == {
        "target_in_selection": 1.0,
        "library_fraction": 1.0,
        "nodes_per_user": 1.0,
    }
    leaf = int(tree.leaf[1])
    one = torch.zeros_like(every)
    one[:, leaf] = True
    stats = selection_coverage(one, tree, target)
    share = int(tree.size[leaf]) / 199
    assert (
        stats["target_in_selection"] == pytest.approx(share) == stats["library_fraction"]
    )  # a leaf holds its own items
    rows = coverage_sweep(torch.randn(199, tree.num_nodes), target, tree, [0.1, 1.0], [2], max_nodes=20)
    assert [r["select_method"] for r in rows] == ["frontier", "frontier", "beam"]
    assert rows[0]["library_fraction"] <= 0.1 + 1e-9 and rows[1]["target_in_selection"] == 1.0


def _run(model, mode, seed, epoch_s, best_epoch, ndcg, ranks, threads=1, capped=False, first=None):
    """A run result; ``first``: an earlier epoch (0-based) whose valid score ties the best one."""
    timings = {"epochs": best_epoch + 3, "epoch_s": [epoch_s] * (best_epoch + 3), "train_s": epoch_s * (best_epoch + 3)}
    timings.update(best_epoch=best_epoch, time_to_best_s=epoch_s * (best_epoch + 1), eval_s=1.0)
    timings["valid_curve"] = [
        {"epochs": e + 1, "train_s": epoch_s * (e + 1), "valid_score": 0.5 + 0.5 * (e in (first, best_epoch))}
        for e in range(best_epoch + 3)
    ]
    return {
        "dataset": "d", "model": model, "seed": seed, "train_mode": mode, "timings": timings,
        "test_result": {"ndcg@10": ndcg, "hit@10": 2 * ndcg}, "test_ranks": ranks,
        "torch_threads": threads, "time_capped": capped,
    }  # fmt: skip


def test_compare_runs_pairs_by_seed_and_reads_the_curves(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from compare_runs import compare, curve_stats, main

    def run(seed, ndcg, ranks, curve):
        r = _run("M", "all_positions", seed, 1.0, 1, ndcg, ranks)
        r["timings"]["valid_curve"] = [
            {"epochs": e + 1, "train_s": e + 1.0, "valid_score": v} for e, v in enumerate(curve)
        ]
        return {**r, "best_valid_result": {"ndcg@10": max(curve)}}

    steady, jumpy = [0.1] * 9 + [0.5, 0.5, 0.5], [0.1] * 9 + [0.4, 0.6, 0.4]
    assert curve_stats(run(1, 0.1, [0], steady)) == {"mean_abs_step": 0.0, "median": 0.5}
    assert curve_stats(run(1, 0.1, [0], jumpy)) == pytest.approx({"mean_abs_step": 0.2, "median": 0.4})
    assert curve_stats(run(1, 0.1, [0], [0.1] * 5))["median"] is None  # too short to read
    a = [run(1, 0.5, [1, 1], steady), run(2, 0.5, [1, 1], steady)]
    b = [run(2, 0.5, [0, 0], jumpy), run(3, 0.9, [0, 0], jumpy)]
    out = compare(a, b)
    assert out["paired_seeds"] == [2] and [row["seed"] for row in out["per_seed"]] == [2]
    ndcg = lambda rank: 1 / math.log2(rank + 2)  # noqa: E731
    assert out["bootstrap"]["mean"] == pytest.approx(ndcg(0) - ndcg(1))  # B minus A
    assert out["b"]["best_valid_ndcg@10"] == 0.6 and out["a"]["best_valid_ndcg@10"] == 0.5
    assert (
        out["b"]["valid_median"] == pytest.approx(0.4) and out["a"]["valid_median"] == 0.5
    )  # higher best, lower median
    assert out["b"]["valid_mean_abs_step"] == pytest.approx(0.2) and out["a"]["valid_mean_abs_step"] == 0.0
    for i, r in enumerate(a + b):
        folder = tmp_path / ("a" if i < 2 else "b") / "runs"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"d__M__{r['seed']}.json").write_text(json.dumps(r))
    assert main(["--a", str(tmp_path / "a"), "--b", str(tmp_path / "b"), "--out", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["paired_seeds"] == [2]
    assert main(["--a", str(tmp_path / "a"), "--b", str(tmp_path / "b"), "--model", "other"]) == 2
    # two models trained on the same seeds: paired as well, and the output names both
    other = tmp_path / "o" / "runs"
    other.mkdir(parents=True)
    (other / "d__N__2.json").write_text(json.dumps({**b[0], "model": "N"}))
    assert main(["--a", str(tmp_path / "a"), "--b", str(other.parent), "--out", str(tmp_path / "n.json")]) == 0
    both = json.loads((tmp_path / "n.json").read_text())
    assert both["model_dataset"] == ["M", "d"] and both["model_b"] == "N" and both["paired_seeds"] == [2]
    assert main(["--a", str(tmp_path / "a"), str(other.parent), "--b", str(tmp_path / "b")]) == 2  # A mixes models


def test_progress_lists_runs_that_have_a_last_checkpoint_but_no_result(tmp_path):
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from progress import main

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "runs").mkdir()
    for seed, name in ((1, "M-a-last.pth"), (2, "M-b-last.pth")):
        state = {"config": {"model": "M", "dataset": "d", "seed": seed}, "epoch": 3, "train_s": 9.0}
        state.update(best_valid_score=0.5, cur_step=1, valid_curve=[{"epochs": 1, "train_s": 3.0, "valid_score": 0.5}])
        torch.save(state, tmp_path / "checkpoints" / name)
    (tmp_path / "runs" / "d__M__1.json").write_text("{}")  # seed 1 has ended
    assert main([str(tmp_path)]) == 0
    (row,) = json.loads((tmp_path / "progress.json").read_text())
    assert row["seed"] == 2 and row["epochs_done"] == 3 and row["best_valid_score"] == 0.5
    assert row["resume"] == f"--set resume_from={tmp_path / 'checkpoints' / 'M-b-last.pth'}"
    assert main([str(tmp_path / "runs")]) == 2  # no checkpoints/ there


def test_paths_compare_the_same_architecture_across_train_modes(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import paths
    from paths import main, summarize

    runs = [
        _run("SASRec", None, 1, 100.0, 4, 0.05, [0, -1], first=1),  # RecBole's SASRec: prefixes, a tie at epoch 2
        _run("SASRec", None, 2, 100.0, 9, 0.06, [1, -1], capped=True),  # capped: left out
        _run("SASRecAllPos", "all_positions", 1, 5.0, 9, 0.06, [0, 0]),
        _run("RimiRec", "all_positions", 1, 5.0, 9, 0.06, [0, 0], threads=1),
        _run("RimiRec", "prefixes", 1, 50.0, 1, 0.05, [0, 0], threads=2),
        {**_run("SASRecAllPos", "all_positions", 1, 20.0, 4, 0.06, [0, 0]), "config": {"all_positions_stride": 25}},
        {**_run("SASRecAllPos", "all_positions", 1, 20.0, 4, 0.06, [0, 0]), "config": {"train_batch_size": 8}},
        {
            **_run("SASRecAllPos", "all_positions", 1, 2.5, 9, 0.07, [0, 0]),
            "config": {"all_positions_group_by_length": True},
        },
        {**_run("SASRecAllPos", "all_positions", 2, 5.0, 9, 0.06, [0, 0]), "all_positions_group_by_length": False},
        {**_run("SASRecAllPos", "all_positions", 3, 20.0, 4, 0.06, [0, 0]), "all_positions_stride": 25},  # recorded
        {**_run("SASRecAllPos", "all_positions", 1, 10.0, 4, 0.06, [0, 0]), "config": {"train_batch_size": 8}}
        | {"all_positions_pack": True},
    ]
    summary = summarize(runs)
    assert paths.time_to_first_best(runs[0]) == 200.0
    late = {**runs[0], "timings": {**runs[0]["timings"], "valid_curve": runs[0]["timings"]["valid_curve"][3:]}}
    assert paths.time_to_first_best(late) is None  # a curve that starts after epoch 1 may miss the first best
    partial = summarize([runs[0], {**late, "seed": 3}])["groups"]["d/SASRec/prefixes"]
    assert "time_to_first_best_s" not in partial and "time_to_best_s" in partial  # not a mean over some seeds
    sas = summary["comparisons"]["d/SASRec/all_positions"]
    assert sas["same_threads"] and sas["time_to_best_s_ratio"] == pytest.approx(500.0 / 50.0)
    assert sas["s_per_epoch_ratio"] == pytest.approx(20.0)
    assert sas["time_to_first_best_s_ratio"] == pytest.approx(200.0 / 50.0)  # the tie at 200 s, not 500 s
    assert summary["groups"]["d/SASRec/prefixes"]["seeds"] == [1]
    assert sas["paired_seeds"] == [1] and sas["bootstrap"]["mean"] == pytest.approx(0.0 - 1.0 / 2)
    assert "d/SASRec/all_positions batch 8" in summary["groups"]
    strided = summary["comparisons"]["d/SASRec/all_positions stride 25"]  # its own path, not mixed in
    assert strided["time_to_best_s_ratio"] == pytest.approx(5.0) and sas["time_to_best_s_ratio"] == pytest.approx(10.0)
    assert summary["groups"]["d/SASRec/all_positions"]["seeds"] == [1, 2]  # grouping off: the same path
    assert summary["groups"]["d/SASRec/all_positions stride 25"]["seeds"] == [1, 3]  # set or recorded: one path
    grouped = summary["comparisons"]["d/SASRec/all_positions grouped vs all_positions"]
    assert grouped["base"] == "all_positions" and grouped["time_to_best_s_ratio"] == pytest.approx(2.0)
    assert grouped["ndcg@10_base_minus_other"] == pytest.approx(-0.01)
    assert summary["comparisons"]["d/SASRec/all_positions grouped"]["base"] == "prefixes"
    packed = summary["comparisons"]["d/SASRec/all_positions batch 8 packed vs all_positions batch 8"]
    assert packed["time_to_best_s_ratio"] == pytest.approx(2.0)  # against the same batch size unpacked
    targets = {**runs[-1], "all_positions_batch_targets": 2048, "train_batch_size": 128}  # the batch in targets
    assert paths.path_of(targets) == "all_positions targets 2048 packed"
    assert paths.path_of({**targets, "all_positions_splits": 1, "all_positions_shift": False}) == paths.path_of(targets)
    split = {**targets, "all_positions_splits": 5, "all_positions_shift": True}
    assert paths.path_of(split) == "all_positions targets 2048 packed splits 5 shifted"
    rimi = summary["comparisons"]["d/RimiRec/all_positions"]
    own_batch = {**runs[4], "config": {"train_batch_size": 2048}}  # RimiRec's only prefix runs: their own batch
    alone = summarize([runs[3], {**own_batch, "torch_threads": 1}])["comparisons"]
    (name,) = alone
    assert name == "d/RimiRec/all_positions vs prefixes batch 2048" and alone[name]["base"] == "prefixes batch 2048"
    assert alone[name]["time_to_best_s_ratio"] == pytest.approx(100.0 / 50.0)
    assert not rimi["same_threads"] and "time_to_best_s_ratio" not in rimi  # 1 vs 2 threads: no ratio
    for i, run in enumerate(runs):
        (tmp_path / f"r{i}.json").write_text(json.dumps(run))
    assert main(["--out", str(tmp_path / "out"), *map(str, sorted(tmp_path.glob("r*.json")))]) == 0
    table = (tmp_path / "out" / "table.md").read_text()
    assert "10.0x sooner (4.0x to first reach it" in table and "thread counts differ" in table
    assert "20.0x less time per epoch; means over 1 and 2 seeds)" in table  # prefixes: seed 1 only (seed 2 capped)
    assert "all_positions grouped against all_positions: best valid reached 2.0x sooner" in table


def _record_many(meta_path, tag):
    from run import record_command

    for i in range(20):
        record_command(meta_path, ["run.py", tag, str(i)])


def test_meta_keeps_every_command_when_two_processes_start_together(tmp_path):
    """Two benchmark processes on one folder once left meta.json as invalid JSON with a command lost."""
    import multiprocessing

    sys.path.insert(0, str(ROOT / "benchmarks"))
    meta_path = tmp_path / "meta.json"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_record_many, args=(meta_path, tag)) for tag in ("a", "b", "c")]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    commands = json.loads(meta_path.read_text())["commands"]
    assert sorted(map(tuple, commands)) == sorted(("run.py", t, str(i)) for t in "abc" for i in range(20))
    assert not list(tmp_path.glob("*.tmp"))


def test_readme_commands_leave_out_local_checkpoints():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from readme import command_line

    argv = ["benchmarks/run.py", "--models", "SASRec", "--set", "resume_from=/x/benchmarks/results/a/c-last.pth",
            "epochs=3", "--out", "/home/u/repo/benchmarks/results/a"]  # fmt: skip
    line = command_line(argv)
    assert line.startswith("- `python benchmarks/run.py --models SASRec --set epochs=3 --out benchmarks/results/a`")
    assert "resume_from" not in line and "continued" in line
    assert command_line(["benchmarks/run.py", "--set", "resume_from=a.pth"]) == (
        "- `python benchmarks/run.py` (continued from an earlier run's checkpoint)"
    )
    assert "continued" not in command_line(["benchmarks/run.py", "--set", "epochs=3"])


def test_paths_take_a_folder_recorded_thread_count_for_runs_that_lack_one(tmp_path):
    """Runs made before torch_threads was written: the folder's meta.json says how every command ran."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from paths import main

    for name, run in {
        "old": _run("RimiRec", "all_positions", 1, 5.0, 9, 0.06, [0, 0], threads=None),
        "new": _run("RimiRec", "prefixes", 1, 50.0, 9, 0.06, [0, 0], threads=1),
    }.items():
        (tmp_path / name / "runs").mkdir(parents=True)
        (tmp_path / name / "runs" / "r.json").write_text(json.dumps(run))
    (tmp_path / "new" / "meta.json").write_text(json.dumps({"commands": []}))
    assert main(["--out", str(tmp_path / "a"), str(tmp_path / "old"), str(tmp_path / "new")]) == 0
    assert "thread counts differ" in (tmp_path / "a" / "table.md").read_text()  # nothing recorded: no ratio
    assert main(["--out", str(tmp_path / "c"), str(tmp_path / "old"), str(tmp_path / "typo")]) == 2  # one line
    (tmp_path / "old" / "meta.json").write_text(json.dumps({"omp_num_threads_all_commands": "1"}))
    assert main(["--out", str(tmp_path / "b"), str(tmp_path / "old"), str(tmp_path / "new")]) == 0
    table = (tmp_path / "b" / "table.md").read_text()
    assert "thread counts differ" not in table and "best valid reached 10.0x sooner" in table


def test_benchmark_tools_name_a_missing_path_in_one_line(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import history_diagnosis
    import readme

    missing = str(tmp_path / "nope")
    assert history_diagnosis.main([missing]) == 2 and readme.main([missing]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") and "nope" in line for line in err)


def test_set_values_are_read_as_numbers_where_python_reads_numbers():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run import parse_value

    assert parse_value("1e-3") == 0.001  # PyYAML alone gives the text '1e-3', which the config check refuses
    assert parse_value("30") == 30 and isinstance(parse_value("30"), int) and parse_value("True") is True
    assert parse_value("prefixes") == "prefixes" and parse_value("nan") == "nan" and parse_value("~") is None


def test_window_counts_match_the_prefix_rows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import window_counts

    out = tmp_path / "counts.json"
    assert (
        window_counts.main(["--datasets", "tiny", "--data_path", str(DATA), "--batch_targets", "64", "--out", str(out)])
        == 0
    )
    (row,) = json.loads(out.read_text())["rows"]
    assert row["targets"] == row["prefix_rows"]  # every prefix row's target is in exactly one window
    assert row["windows_per_batch"] == max(1, round(64 / (row["targets"] / row["windows"])))
    assert row["steps_per_epoch_all_positions"] == -(-row["windows"] // row["windows_per_batch"])
    # sequences longer than a window, counted again from the raw file (leave-one-out: 3 items are no train target)
    short = window_counts.main(["--datasets", "tiny", "--data_path", str(DATA), "--max_len", "20", "--out", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    per_user = {}
    for line in (DATA / "tiny" / "tiny.inter").read_text().splitlines()[1:]:
        per_user[line.split("\t")[0]] = per_user.get(line.split("\t")[0], 0) + 1
    long = [n - 3 for n in per_user.values() if n - 3 > 20]
    assert short == 0 and row["MAX_ITEM_LIST_LENGTH"] == 20 and row["users"] == len(per_user)
    assert (row["users_longer_than_window"], row["targets_in_them"]) == (len(long), sum(long)) and long
