import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import run_rimirec  # noqa: E402
from recbole_rimirec.quick_start import run  # noqa: E402

KEYS = {"model", "dataset", "seed", "best_valid_result", "test_result", "timings"}
TIMINGS = {"data_s", "train_s", "epochs", "epoch_s", "eval_s"}


def test_run_reports_and_checkpoint_loads_weights_only(tiny):
    result = run("SASRecAllPos", "tiny", config_dict=tiny)
    assert KEYS <= set(result) and TIMINGS <= set(result["timings"])
    assert result["train_mode"] == "all_positions"  # with its options' effective values (defaults)
    assert result["all_positions_stride"] is None and result["all_positions_group_by_length"] is False
    assert result["all_positions_pack"] is True  # the model's default
    assert result["all_positions_batch_targets"] is None  # the fixture sets train_batch_size: windows per batch
    assert result["windows_per_batch"] == tiny["train_batch_size"]
    assert result["timings"]["epochs"] == 2 and len(result["timings"]["epoch_s"]) == 2
    assert 0 <= result["timings"]["best_epoch"] <= 1
    assert result["timings"]["time_to_best_s"] <= sum(result["timings"]["epoch_s"])
    curve = result["timings"]["valid_curve"]
    assert [c["epochs"] for c in curve] == [1, 2]
    assert max(c["valid_score"] for c in curve) == pytest.approx(result["best_valid_result"]["ndcg@10"])
    assert 0.0 <= result["test_result"]["ndcg@10"] <= 1.0
    checkpoint = torch.load(result["checkpoint"], weights_only=True)
    assert checkpoint["config"]["model"] == "SASRecAllPos"
    assert checkpoint["config"]["MODEL_TYPE"] == "SEQUENTIAL"
    json.dumps(result)


def test_time_to_best_counts_only_the_epochs_a_resumed_run_timed():
    from recbole_rimirec.quick_start import time_to_best

    seconds = [10.0, 20.0, 30.0]
    assert time_to_best(seconds, 3, 1) == 30.0  # a run from epoch 0
    # resumed from a best checkpoint after 30 epochs: these are epochs 30-32, the best is epoch 31
    assert time_to_best(seconds, 33, 31) == 30.0
    assert time_to_best(seconds, 33, 29) is None  # best before the resume: not timed here
    assert time_to_best(seconds, 3, None) is None


def test_run_survives_another_run_creating_its_folders(tiny, monkeypatch):
    # RecBole's ensure_dir checks, then creates: here another run always creates the folder in between.
    def racing_ensure_dir(path):
        if not os.path.exists(path):
            os.makedirs(path)  # the other run
            os.makedirs(path)  # RecBole's own call: FileExistsError

    monkeypatch.setattr("recbole.utils.logger.ensure_dir", racing_ensure_dir)
    monkeypatch.setattr("recbole.trainer.trainer.ensure_dir", racing_ensure_dir)
    tiny["epochs"] = 1
    assert run("SASRecAllPos", "tiny", config_dict=tiny)["test_result"] is not None


def test_recbole_builtin_runs_unchanged(tiny):
    result = run("Pop", "tiny", config_dict=tiny)
    assert result["test_result"]["hit@50"] > 0
    assert "all_positions_stride" not in result  # not on the all_positions path


def test_cli_writes_complete_json(tiny, tmp_path):
    out = tmp_path / "r.json"
    overrides = [f"--{k}={v}" for k, v in tiny.items()]
    assert run_rimirec.main(["-m", "SASRecAllPos", "-d", "tiny", "--out", str(out), *overrides]) == 0
    result = json.loads(out.read_text())
    assert KEYS <= set(result) and TIMINGS <= set(result["timings"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["-m", "NoSuchModel"], "unknown model 'NoSuchModel'"),
        (["-d", "no-such-data", "--data_path=/nonexistent"], "no-such-data.inter not found"),
        (["--config_files", "missing.yaml"], "config file not found: missing.yaml"),
        (["--epochs"], "--key=value"),
        # checked before any data is read: the dataset does not exist either
        (["-d", "no-such-data", "--data_path=/nonexistent", "--train_mode=foo"], "train_mode 'foo' is not one of"),
        (["-m", "RimiRec", "-d", "no-such-data", "--data_path=/nonexistent", "--select_budget=2.5"], "select_budget"),
        (["-m", "ComiRecSA", "-d", "no-such-data", "--data_path=/nonexistent", "--neg_sampler=x"], "neg_sampler 'x'"),
        (["-d", "no-such-data", "--data_path=/nonexistent", "--epochs=abc"], "epochs must be an integer"),
        (["-m", "RimiRec", "-d", "no-such-data", "--data_path=/nonexistent", "--alpha=abc"], "alpha must be a number"),
        (["-d", "no-such-data", "--data_path=/nonexistent", "--valid_metric=ndcg@5"], "valid_metric 'ndcg@5' is not"),
        (["-d", "no-such-data", "--data_path=/nonexistent", "--metrics=['Foo']"], "config: There is no metric named"),
        (["-m", "SASRecAllPos", "-d", "no-such-data", "--data_path=/x", "--n_heads=3"], "a multiple of n_heads (3)"),
        (["-d", "no-such-data", "--data_path=/nonexistent", "--resume_from=gone.pth"], "resume_from gone.pth: no such"),
        (["-d", "no-such-data", "--data_path=/nonexistent", "--time_budget_s=abc"], "time_budget_s must be a number"),
        (["-d", "no-such-data", "--data_path=/x", "--checkpoint_dir=afile/saved"], "checkpoint_dir afile/saved cannot"),
        (["-d", "no-such-data", "--data_path=/nonexistent", "--learning_rate=0"], "learning_rate must be above 0"),
        (["-d", "no-such-data", "--data_path=/nonexistent", "--train_batch_size=0"], "train_batch_size must be an"),
        (["-d", "no-such-data", "--data_path=/nonexistent", "--MAX_ITEM_LIST_LENGTH=0"], "MAX_ITEM_LIST_LENGTH must"),
        (["-m", "RimiRec", "-d", "no-such-data", "--data_path=/nonexistent", "--tree_branching=1"], "tree_branching"),
        (
            ["-m", "SASRecAllPos", "-d", "no-such-data", "--data_path=/x", "--all_positions_stride=0"],
            "stride must be an",
        ),
        (["-d", "no-such-data", "--data_path=/nonexistent", "--topk=0"], "config: topk must be a positive integer"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")  # a file where a folder is wanted: checkpoint_dir afile/saved cannot be made
    out = tmp_path / "r.json"
    assert run_rimirec.main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not out.exists()


def test_cli_bad_input_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run_rimirec.py"), "-m", "NoSuchModel"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().startswith("error: unknown model")
