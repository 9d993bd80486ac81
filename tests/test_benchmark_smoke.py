"""The benchmark command runs end to end on the tiny set and writes its report files."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

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


def test_rimirec_analysis_decomposes_a_saved_run(tiny):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from rimirec_analysis import analyse

    from recbole_rimirec.quick_start import evaluate_saved, run

    tree = {"tree_branching": 4, "tree_leaf_size": 10, "tree_max_depth": 2, "tree_vector_dim": 16}
    result = run("RimiRec", "tiny", config_dict={**tiny, **tree, "select_budget": 0.2})
    found = analyse(result["checkpoint"], budgets=[0.1, 0.3], beams=[2], alphas=[1.0], progress=lambda _: None)
    parts = found["decomposition"]
    for key in ("ndcg@10", "recall@10", "recall@50"):  # the in-process ranks are RecBole's
        assert parts["selection"][key] == pytest.approx(result["test_result"][key], abs=1e-4)
    whole = evaluate_saved(result["checkpoint"], {"select_budget": 1.0, "retrieval_score": "global", "alpha": 0.0})
    assert parts["global_head"]["ndcg@10"] == pytest.approx(whole["result"]["ndcg@10"], abs=1e-4)
    assert parts["ceiling"]["coverage"] == 1.0 and parts["ceiling"]["library_fraction"] == pytest.approx(1.0)
    from report import ndcg10, recall50

    for name in ("ceiling", "global_head", "selection"):  # the kept ranks give the row's own metrics
        ranks = np.array(parts[name]["ranks"])
        assert len(ranks) == parts[name]["users"]
        assert ndcg10(ranks).mean() == pytest.approx(parts[name]["ndcg@10"])
        assert recall50(ranks).mean() == pytest.approx(parts[name]["recall@50"])
    assert parts["selection"]["library_fraction"] <= 0.2 + 1e-9
    users = parts["selection"]["users"]
    assert sum(b["users"] for b in parts["selection"]["by_history"].values()) == users == found["users"]
    assert sum(parts["selection"]["covered_at_level"].values()) == pytest.approx(parts["selection"]["coverage"])
    assert [(r["select_method"], r.get("select_budget", r.get("beam_size"))) for r in found["sweep"]] == [
        ("frontier", 0.1), ("frontier", 0.3), ("leaves", 0.1), ("leaves", 0.3), ("density", 0.1), ("density", 0.3),
        ("beam", 2),
    ]  # fmt: skip
    for r in found["sweep"]:
        assert r["coverage"] <= 1.0 and (
            r["select_method"] == "beam" or r["library_fraction"] <= r["select_budget"] + 0.05
        )
    assert set(found["generator_accuracy"]) == {"level_1", "level_2"}
    ceiling_at_1, selection_at_1, *by_leaves = found["alpha_sweep"]  # alpha 1 is the run's own: the same figures
    assert [r["scope"] for r in by_leaves] == ["leaves", "density"]
    assert ceiling_at_1["ndcg@10"] == parts["ceiling"]["ndcg@10"] and selection_at_1["scope"] == "selection"
    assert selection_at_1["ndcg@10"] == parts["selection"]["ndcg@10"]


def test_analysis_files_keep_ranks_on_one_line():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from rimirec_analysis import compact_ranks

    value = {"ceiling": {"ranks": [-1, 0, 12], "ndcg@10": 0.5}, "sweep": [1, 2], "empty": {"ranks": []}}
    text = compact_ranks(json.dumps(value, indent=2))
    assert json.loads(text) == value
    assert '"ranks": [-1, 0, 12]' in text and '"ranks": []' in text and '"sweep": [\n' in text


def test_checkpoint_sweeps_record_which_run_and_split_they_read(tiny, tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import generator_refit
    import settings_sweep
    import subleaf_sim

    from recbole_rimirec.quick_start import run

    tree = {"tree_branching": 4, "tree_leaf_size": 10, "tree_max_depth": 2, "tree_vector_dim": 16}
    checkpoint = run("RimiRec", "tiny", config_dict={**tiny, **tree, "select_budget": 0.2})["checkpoint"]
    commands = {
        settings_sweep: ["--grid", "select_budget=0.1,0.3"],
        subleaf_sim: ["--stage1", "0.2", "--sub_size", "4", "--orders", "centroid"],
        generator_refit: ["--epochs", "1"],
    }
    for script, options in commands.items():
        out = tmp_path / f"{script.__name__}.json"
        script.main([checkpoint, "--split", "valid", "--out", str(out), *options])
        found = json.loads(out.read_text())
        assert (found["dataset"], found["seed"], found["split"]) == ("tiny", 2020, "valid"), script.__name__
        assert found["checkpoint"] and found["rows"], script.__name__


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


def test_compare_runs_pairs_runs_under_comirecs_protocol_over_each_users_targets(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from compare_runs import compare, main

    def run(model, hits):
        r = _run(model, "all_positions", 1, 1.0, 1, 0.1, [0, 0])  # its test_ranks must not be read here
        r["config"] = {"eval_protocol": "comirec"}
        r["best_valid_result"] = {"ndcg@10": 0.1}
        return {**r, "test_hits": {"ranks": hits, "positives": [1, 2]}}

    a, b = run("A", [[1], []]), run("B", [[0], [0, 1]])  # user 1: 1 target; user 2: 2 targets
    out = compare([a], [b])
    assert out["eval_protocol"] == "comirec" and out["paired_seeds"] == [1] and "bootstrap" not in out
    assert out["bootstrap_recall@50"]["mean"] == pytest.approx(((1 - 1) + (1 - 0)) / 2)  # hits / targets
    assert out["bootstrap_ndcg@20"]["mean"] == pytest.approx(((1 - 1 / math.log2(3)) + (1 - 0)) / 2)
    for name, r in (("a", a), ("b", b), ("loo", {**b, "config": {}})):
        (tmp_path / name / "runs").mkdir(parents=True)
        (tmp_path / name / "runs" / "d__M__1.json").write_text(json.dumps(r))
    assert main(["--a", str(tmp_path / "a"), "--b", str(tmp_path / "b")]) == 0
    assert main(["--a", str(tmp_path / "a"), "--b", str(tmp_path / "loo")]) == 2  # protocols mixed


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


def test_published_commands_leave_out_local_checkpoints():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from tables import command_line

    argv = ["run.py", "--models", "SASRec", "--set", "resume_from=benchmarks/results/a/c-last.pth",
            "epochs=3", "--out", "results/a"]  # fmt: skip
    line = command_line(argv)
    assert line.startswith("- `python benchmarks/run.py --models SASRec --set epochs=3 --out benchmarks/results/a`")
    assert "resume_from" not in line and "continued" in line
    assert command_line(["benchmarks/run.py", "--set", "resume_from=a.pth"]) == (
        "- `python benchmarks/run.py` (continued from an earlier run's checkpoint)"
    )
    assert "continued" not in command_line(["benchmarks/run.py", "--set", "epochs=3"])


def test_benchmark_tools_name_a_missing_path_in_one_line(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import compare_runs

    missing = str(tmp_path / "nope")
    assert compare_runs.main(["--a", missing, "--b", missing]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "nope" in err[0]


def test_set_values_are_read_as_numbers_where_python_reads_numbers():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run import parse_value

    assert parse_value("1e-3") == 0.001  # PyYAML alone gives the text '1e-3', which the config check refuses
    assert parse_value("30") == 30 and isinstance(parse_value("30"), int) and parse_value("True") is True
    assert (
        parse_value("prefixes") == "prefixes"
        and parse_value("nan") == "nan"
        and parse_value("~") is None is parse_value("None")
    )


def test_results_files_hold_no_path_of_this_machine(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run import ROOT as REPO
    from run import portable, record_command

    inside = str(REPO / "benchmarks" / "results" / "a")
    assert portable(inside) == "benchmarks/results/a" and portable(f"resume_from={inside}/c.pth").startswith(
        "resume_from=benchmarks/results/a/"
    )
    assert portable(str(tmp_path / "data")) == "<path>" and portable("../shared/data") == "../shared/data"
    assert portable(3) == 3 and portable(None) is None
    record_command(tmp_path / "meta.json", ["run.py", "--data_path", str(tmp_path), "--out", inside])
    (command,) = json.loads((tmp_path / "meta.json").read_text())["commands"]
    assert command == ["run.py", "--data_path", "<path>", "--out", "benchmarks/results/a"]


def test_published_tables_are_up_to_date():
    """README.md and docs/ hold exactly what the results files give (python benchmarks/tables.py)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "tables.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_synthetic_library_has_its_planted_hierarchy(tmp_path, tiny):
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import synthetic

    found = synthetic.generate(str(tmp_path), "syn", 2000, 300, 6000, circles=4, sub_circles=5, stay=0.8, seed=1)
    assert found["users"] == 300 and abs(found["interactions"] - 6000) < 1500
    rows = np.loadtxt(tmp_path / "syn" / "syn.inter", skiprows=1, dtype=np.int64)  # user, item, position
    labels = {}
    for line in (tmp_path / "syn" / "syn.item").read_text().splitlines()[1:]:
        item, circle, sub = line.split("\t")
        labels[int(item)] = (circle, sub)
    assert len(labels) == 2000 and {int(s[1:]) for _, s in labels.values()} == set(range(20))
    same_user = rows[1:, 0] == rows[:-1, 0]
    same_sub = np.array([labels[a][1] == labels[b][1] for a, b in zip(rows[:-1, 1], rows[1:, 1], strict=True)])
    assert 0.75 < same_sub[same_user].mean() < 0.95  # runs stay in an interest (stay 0.8, plus repeats)
    assert np.bincount(rows[:, 0]).min() == 0 and np.bincount(rows[:, 0])[1:].min() >= 5  # users 1.., 5+ items each
    from recbole_rimirec.quick_start import run

    result = run("MostPop", "syn", config_dict={**tiny, "data_path": str(tmp_path), "epochs": 1})
    assert result["test_result"]["hit@50"] > 0


def test_scale_training_row_has_the_issue_fields(tmp_path):
    out = tmp_path / "rows.jsonl"
    command = [sys.executable, str(ROOT / "benchmarks" / "scale_train.py"), "--sizes", "2000", "--users", "300"]
    command += ["--interactions", "5000", "--models", "RimiRec", "--data_path", str(tmp_path), "--out", str(out)]
    command += ["--set", "all_positions_stride=None", "select_budget=0.05"]
    subprocess.run(command, check=True, capture_output=True, cwd=tmp_path)
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    fields = {"model", "n_items", "n_users", "n_interactions", "epoch_s", "peak_memory_gb", "eval_ms_per_user"}
    assert fields | {"recall@50", "tree_ari", "device"} <= set(row)
    assert row["n_items"] == 2000 and -1 <= row["tree_ari"] <= 1 and row["peak_memory_gb"] > 0
    assert -1 <= row["tree_ari_seen"] <= 1 and row["threads"] >= 1
    assert row["settings"]["select_budget"] == 0.05 and row["settings"]["all_positions_stride"] is None


def test_scale_plot_draws_one_curve_per_setting(tmp_path):
    pytest.importorskip("matplotlib")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from scale_train import MODELS, curve_label

    rows = tmp_path / "rows.jsonl"
    base = {"model": "RimiRec", "n_interactions": 10_000_000, "peak_memory_gb": 2.0, "eval_ms_per_user": 1.0}
    lines = [
        {**base, "n_items": n, "epoch_s": 10.0 * n, "settings": {**MODELS["RimiRec"], **extra}}
        for n in (100_000, 1_000_000)
        for extra in ({}, {"all_positions_stride": None})
    ]
    rows.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert curve_label(lines[0]) == "RimiRec, 10M interactions"
    assert curve_label(lines[1]) == "RimiRec, 10M interactions, all_positions_stride=None"
    older = {**base, "model": "SASRecAllPos", "n_items": 10, "settings": {"global_negatives": 4096}}
    assert curve_label(older) == "SASRecAllPos, 10M interactions, eval_from_lists=default, retrieval=default"
    noted = {**lines[0], "allocator": "libtcmalloc_minimal.so.4", "note": "beside one other run"}
    assert curve_label(noted) == "RimiRec, 10M interactions, tcmalloc_minimal [beside one other run]"
    assert (
        curve_label({**noted, "threads": 2})
        == "RimiRec, 10M interactions, 2 threads, tcmalloc_minimal [beside one other run]"
    )
    command = [sys.executable, str(ROOT / "benchmarks" / "scale_train.py"), "--out", str(rows)]
    subprocess.run(command + ["--plot", str(tmp_path / "scale.png")], check=True, capture_output=True)
    assert (tmp_path / "scale.png").stat().st_size > 0
    missing = subprocess.run(command, capture_output=True, text=True)
    assert missing.returncode == 2 and "--data_path is needed" in missing.stderr


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux's per-process peak reset")
def test_data_memory_row_has_every_stage(tmp_path):
    out = tmp_path / "rows.jsonl"
    command = [sys.executable, str(ROOT / "benchmarks" / "data_memory.py"), "--dataset", "tiny"]
    command += ["--data_path", str(DATA), "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True, cwd=tmp_path)
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert set(row["stages"]) == {"load", "prefix_rows", "split", "tree", "all_positions_loader"}
    assert all(stage["peak_gb"] >= stage["after_gb"] > 0 for stage in row["stages"].values())
    assert row["data_peak_gb"] == max(stage["peak_gb"] for stage in row["stages"].values())


def test_resume_continues_an_interrupted_run_from_its_last_checkpoint(tmp_path):
    out = tmp_path / "bench"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "run.py"),
        "--datasets", "tiny", "--models", "SASRecAllPos", "--seeds", "1",
        "--data_path", str(DATA), "--out", str(out),
        "--set", "epochs=3", "hidden_size=8", "inner_size=16", "n_layers=1", "n_heads=1", "MAX_ITEM_LIST_LENGTH=10",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True)
    path = out / "runs" / "tiny__SASRecAllPos__1.json"
    first = json.loads(path.read_text())
    path.unlink()  # as if the run had been cut off during its last epoch: its -last.pth is there
    done = subprocess.run(cmd + ["--resume"], check=True, cwd=tmp_path, capture_output=True, text=True)
    assert "resuming tiny SASRecAllPos 1 from" in done.stderr
    again = json.loads(path.read_text())
    assert again["test_result"] == first["test_result"] and "resume_from" in again["config"]  # exactly the same
    other = subprocess.run(
        cmd[:-1] + ["MAX_ITEM_LIST_LENGTH=12", "--resume"], cwd=tmp_path, capture_output=True, text=True
    )
    assert "resuming" not in other.stderr  # other settings: a new run, not that one's continuation


def test_rescore_writes_the_runs_record_with_new_test_figures(tmp_path):
    out = tmp_path / "bench"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "run.py"),
        "--datasets", "tiny", "--models", "RimiRec", "--seeds", "1",
        "--data_path", str(DATA), "--out", str(out),
        "--set", "epochs=1", "hidden_size=8", "inner_size=16", "n_layers=1", "n_heads=1", "tree_branching=4",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True)
    record = out / "runs" / "tiny__RimiRec__1.json"
    rescore = [sys.executable, str(ROOT / "benchmarks" / "rescore.py"), str(record), "--out", str(tmp_path / "again")]
    subprocess.run(rescore + ["--set", "select_budget=1.0", "retrieval_score=global"], check=True, cwd=tmp_path)
    first, again = json.loads(record.read_text()), json.loads((tmp_path / "again" / "runs" / record.name).read_text())
    assert again["config"]["retrieval_score"] == "global" and again["rescored"]["set"]["select_budget"] == 1.0
    assert again["timings"] == first["timings"] and again["library_fraction"] == 1.0
    assert (tmp_path / "again" / "results.json").is_file()


def test_report_under_comirecs_protocol_pairs_users_over_every_target(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from report import write_report

    def run(model, ranks, positives, recall50):
        r = _run(model, "prefixes", 2020, 1.0, 1, 0.1, [x[0] if x else -1 for x in ranks])
        r["test_result"] = {"ndcg@10": 0.1, "recall@20": 0.1, "recall@50": recall50, "hit@20": 0.2, "hit@50": 0.3}
        return {**r, "test_hits": {"ranks": ranks, "positives": positives}, "config": {"eval_protocol": "comirec"}}

    (tmp_path / "runs").mkdir()
    rimirec = run("RimiRec", [[0, 30], [60]], [2, 3], 0.25)  # user 0: 2 of 2 targets in the top 50
    other = run("ComiRecSA", [[0], []], [2, 3], 0.25)  # user 0: 1 of 2
    for r in (rimirec, other):
        (tmp_path / "runs" / f"d__{r['model']}__2020.json").write_text(json.dumps(r))
    write_report(tmp_path)
    table = (tmp_path / "table.md").read_text()
    assert "ComiRec's protocol" in table and "| Hit@50 |" in table and "NDCG@10 |" not in table
    line = next(x for x in table.splitlines() if x.startswith("- RimiRec - ComiRecSA"))
    assert "NDCG@20 difference +0.0000" in line  # the second hit is past 20
    assert f"Recall@50 difference {(1 - 1 / 2) / 2:+.4f}" in line  # user 0 gains half a target; the mean over 2 users


def test_epoch_cost_times_every_model_in_one_process(tiny, tmp_path):
    """benchmarks/epoch_cost.py: alternated epochs, a test evaluation each, ratios to the baseline."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import epoch_cost

    small = ["hidden_size=16", "inner_size=32", "n_layers=1", "n_heads=1", "MAX_ITEM_LIST_LENGTH=20"]
    out = tmp_path / "cost.json"
    decoder = "RimiRec@generator_decoder=True,tree_branching=4"  # a variant with its own keys
    models = ["RimiRec", decoder, "SASRecAllPos"]
    argv = ["--dataset", "tiny", "--data_path", tiny["data_path"], "--models", *models]
    assert epoch_cost.main([*argv, "--rounds", "2", "--set", *small, "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["models"]
    assert set(rows) == set(models)
    assert rows[decoder]["keys"] == {"generator_decoder": True, "tree_branching": 4} and rows["RimiRec"]["keys"] == {}
    assert all(len(r["epoch_s"]) == 2 and r["ms_per_test_user"] > 0 and r["test_users"] > 0 for r in rows.values())
    assert rows["SASRecAllPos"]["epoch_ratio"] == 1.0
    assert rows["RimiRec"]["epoch_ratio"] == rows["RimiRec"]["median_epoch_s"] / rows["SASRecAllPos"]["median_epoch_s"]


def test_a_forked_checkpoint_resumes_into_its_own_files(tiny):
    """fork_checkpoint: a run branched off a finished one writes the copy; the original's files are untouched."""
    import glob

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from fork_checkpoint import fork

    from recbole_rimirec.quick_start import run

    settings = {**tiny, "epochs": 2, "stopping_step": 10}
    run("SASRecAllPos", "tiny", config_dict=settings)
    (last,) = glob.glob(tiny["checkpoint_dir"] + "/*-last.pth")
    best = last.removesuffix("-last.pth") + ".pth"
    before = {path: Path(path).read_bytes() for path in (last, best)}
    copy = fork(last, tiny["checkpoint_dir"] + "/../fork")
    assert torch.load(copy, weights_only=True)["best_file"] == copy.removesuffix("-last.pth") + ".pth"
    run("SASRecAllPos", "tiny", config_dict={**settings, "epochs": 3, "resume_from": copy})
    assert {path: Path(path).read_bytes() for path in (last, best)} == before
    assert Path(copy).read_bytes() != Path(last).read_bytes()  # the branch went on in its own files


def test_popularity_split_by_hand():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from popularity_split import popularity_bins, split_by_popularity

    popularity = np.array([1, 2, 3, 10, 20, 30])
    which, edges = popularity_bins(popularity, 2)
    assert which.tolist() == [0, 0, 0, 1, 1, 1] and len(edges) == 1
    # two seeds; A finds the popular targets, B the rare ones (rank 0: NDCG 1; rank 60: past Recall@50)
    a = [np.array([-1, -1, 60, 0, 0, 0]), np.array([-1, -1, -1, 0, 0, 49])]
    b = [np.array([0, 0, 0, -1, -1, -1]), np.array([0, 0, -1, -1, -1, -1])]
    low, high = split_by_popularity(a, b, popularity, bins=2)
    assert (low["users"], low["popularity"]) == (3, [1, 3])
    assert low["a_recall@50"] == 0.0 and np.isclose(low["b_recall@50"], (1 + 2 / 3) / 2)
    assert high["a_recall@50"] == 1.0 and high["b_recall@50"] == 0.0
    assert np.isclose(high["a_ndcg@10"], (1 + 2 / 3) / 2)  # rank 49 is in the top 50, not the top 10
    assert np.isclose(high["b_minus_a_recall@50"], -1.0)


def test_popularity_split_names_a_missing_run(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import popularity_split

    missing = str(tmp_path / "none.json")
    assert popularity_split.main(["--dataset", "d", "--a", missing, "--b", missing]) == 2
    assert "none.json: no such run file" in capsys.readouterr().err


@pytest.mark.parametrize("pool", [0.05, 0.5])  # the compact and the dense stage 2
def test_selection_cost_times_every_stage_on_a_small_library(pool):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import selection_cost

    row = selection_cost.one_size(3000, users=8, budget=100, pool=pool, full_users=4, dim=8)
    assert row["compact"] == (pool < 0.1) and row["budget_items"] == 100
    assert 0 < row["searched_items"] <= 100 + 64  # the budget, or a user's single first sub-cluster
    stages = [row[f"{k}_ms"] for k in ("selection", "parts", "search", "normaliser")]
    assert all(s > 0 for s in stages) and math.isclose(row["total_ms"], sum(stages))


def test_residual_codes_per_circle_are_the_trees_own_k_means_and_a_shared_codebook_keeps_the_circles():
    import numpy as np
    from sklearn.cluster import KMeans

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import residual_codes

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8)) + 4 * rng.integers(0, 3, size=(600, 1))  # three loose blobs
    top = residual_codes.circles(x, 4, seed=1)
    per_circle = residual_codes.two_level_codes(x, top, leaf_size=20, seed=1, shared=False)
    circle = per_circle // 4
    assert np.array_equal(circle, top.labels_)
    for c in np.unique(circle):  # clustering a circle's residuals is clustering its vectors
        idx = np.flatnonzero(circle == c)
        k = residual_codes.children(len(idx), 4, 20)
        direct = KMeans(k, n_init=1, random_state=1).fit(x[idx]).labels_
        assert np.array_equal(direct, per_circle[idx] % 4)
    shared = residual_codes.two_level_codes(x, top, leaf_size=20, seed=1, shared=True)
    assert np.array_equal(shared // 4, circle)  # the same circles, other sub-circles
    circles_only = residual_codes.within_share(x, circle)
    assert 0 < residual_codes.within_share(x, per_circle) < circles_only < 1
    assert residual_codes.within_share(x, shared) < circles_only
    assert residual_codes.within_share(x, np.zeros(len(x))) == pytest.approx(1.0)
    assert residual_codes.leaf_sizes(np.array([0, 0, 1, 2, 2, 2])) == {"leaves": 3, "largest": 3, "median": 2.0}


def test_protocols_table_counts_only_runs_of_its_protocol(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import tables

    def write(folder, model, seed, protocol, ndcg):
        run = {"model": model, "dataset": "ml-100k", "seed": seed, "config": {"eval_protocol": protocol}}
        run["timings"] = {"epochs": 1, "epoch_s": [1.0], "train_s": 1.0, "eval_s": 1.0}
        run["test_result"] = {"ndcg@10": ndcg, "ndcg@20": ndcg, "recall@50": 0.5}
        (tmp_path / folder / "runs").mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / "runs" / f"{model}-{seed}.json").write_text(json.dumps(run))

    write("loo", "MIND", 2020, None, 0.1)  # before the key existed: leave-one-out
    write("loo", "MIND", 2021, "leave_one_out", 0.3)
    write("cm", "MIND", 2020, "leave_one_out", 0.9)  # a stray run in the ComiRec folder
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    monkeypatch.setattr(tables, "HEADLINE", {"ml-100k": [("MIND", "MIND", ["loo"])]})
    monkeypatch.setattr(tables, "COMIREC", {"ml-100k": [("MIND", "MIND", ["cm"])]})
    monkeypatch.setattr(tables, "LOO_PENDING", {})
    loo, comirec = tables.protocols().split("ComiRec's protocol")
    assert "| MIND | 0.2000 / 0.5000 (2) |" in loo and "| RimiRec | not run |" in loo
    assert "| MIND | not run |" in comirec and "| GRU4Rec (RecBole) | not run |" in loo
    write("cm", "MIND", 2021, "comirec", 0.4)
    assert "| MIND | 0.4000 / 0.5000 (1) |" in tables.protocols().split("ComiRec's protocol")[1]
    # a row still collecting its seeds shows under leave-one-out here, and nowhere in the headline
    write("pending", "GRU4Rec", 2020, "leave_one_out", 0.6)
    monkeypatch.setattr(tables, "LOO_PENDING", {"ml-100k": [("GRU4Rec (RecBole)", "GRU4Rec", ["pending"])]})
    loo, comirec = tables.protocols().split("ComiRec's protocol")
    assert "| GRU4Rec (RecBole) | 0.6000 / 0.5000 (1) |" in loo and "| GRU4Rec (RecBole) | not run |" in comirec
    assert "GRU4Rec" not in tables.headline("ml-100k")


def test_a_row_with_fewer_seeds_is_never_best_and_sits_below_the_full_rows():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from report import METRICS, markdown

    def row(seeds, value):
        entry = {m: {"mean": value, "std": 0.0} for m in METRICS}
        return {**entry, "seeds": seeds, "time_capped": False, "eval_protocol": "leave_one_out"}

    agg = {"d/Full": row(3, 0.04), "d/Partial": row(1, 0.05)}
    table = markdown(agg, {}, "CPU")
    rows = [line for line in table.splitlines() if line.startswith("| Full") or line.startswith("| Partial")]
    assert rows[0].startswith("| Full | 3 | **0.0400")
    assert rows[1].startswith("| Partial | 1 of 3 | 0.0500") and "**" not in rows[1]
    assert "fewer seeds" in table
    assert "fewer seeds" not in markdown({"d/Full": row(3, 0.04)}, {}, "CPU")
