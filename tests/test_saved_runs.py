"""Saved runs: re-evaluation without retraining, determinism, safe loading."""

import json

import pytest
import torch

from recbole_rimirec import quick_start
from recbole_rimirec.checkpoint import load_checkpoint
from recbole_rimirec.errors import ConfigError
from recbole_rimirec.quick_start import evaluate_saved, run


class Payload:
    """Any pickled object, as RecBole's own checkpoints hold (its Config)."""


TREE = {"tree_branching": 8, "tree_leaf_size": 10, "tree_max_depth": 2, "select_budget": 0.2, "tree_vector_dim": 16}


def test_rimirec_saved_run_reevaluates_to_the_same_metrics(tiny, monkeypatch, tmp_path):
    result = run("RimiRec", "tiny", config_dict={**tiny, **TREE})
    again = evaluate_saved(result["checkpoint"])
    assert again["result"] == result["test_result"]
    assert again["test_ranks"] == result["test_ranks"]  # the same users, in the same order
    valid = evaluate_saved(result["checkpoint"], split="valid")
    assert "test_ranks" not in valid and len(valid["valid_ranks"]) == len(result["test_ranks"])  # one per user
    assert again["library_fraction"] == pytest.approx(result["library_fraction"])
    wider = evaluate_saved(result["checkpoint"], {"select_budget": 1.0, "retrieval": "exact"})
    assert wider["library_fraction"] == pytest.approx(1.0)
    from recbole_rimirec.cli import main  # the same through the command line

    out = str(tmp_path / "again.json")
    assert main(["--evaluate", result["checkpoint"], "--select_budget=1.0", "--retrieval=exact", "--out", out]) == 0
    assert json.loads(open(out).read())["result"] == wider["result"]
    assert main(["--evaluate", result["checkpoint"] + ".nope"]) == 2
    assert main(["--evaluate", result["checkpoint"], "--select_budget=2.5"]) == 2  # one line, no traceback

    def no_data(config):
        raise AssertionError("the data was read before the overrides were checked")

    monkeypatch.setattr(quick_start, "create_dataset", no_data)
    with pytest.raises(ConfigError, match="select_budget"):
        evaluate_saved(result["checkpoint"], {"select_budget": 2.5})


def test_same_seed_same_metrics(tiny):
    a = run("SASRecAllPos", "tiny", config_dict=tiny)
    b = run("SASRecAllPos", "tiny", config_dict=tiny)
    assert a["test_result"] == b["test_result"] and a["best_valid_result"] == b["best_valid_result"]


def test_pickled_or_truncated_checkpoints_are_refused(tiny, tmp_path):
    result = run("Pop", "tiny", config_dict=tiny)
    state = torch.load(result["checkpoint"], weights_only=True)
    raw = open(result["checkpoint"], "rb").read()
    (tmp_path / "cut.pth").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    for name in ("cut.pth", "notes.pth"):
        with pytest.raises(ConfigError, match="is not a whole file written by torch.save"):
            load_checkpoint(str(tmp_path / name))

    torch.save({**state, "config": Payload()}, tmp_path / "pickled.pth")
    with pytest.raises(ConfigError, match="cannot be loaded safely"):
        load_checkpoint(str(tmp_path / "pickled.pth"))


class Interrupt(Exception):
    pass


@pytest.mark.parametrize(
    "model, extra",
    [
        ("SASRecAllPos", {}),
        (
            "SASRecAllPos",
            {"all_positions_group_by_length": True, "all_positions_pack": False, "all_positions_shift": False},
        ),
        ("ComiRecSA", {"train_mode": "random_cut"}),
        # the tree rebuilt at the start of the epoch the crash interrupts (resumed from the new tree), or after it
        ("RimiRec", {"tree_branching": 8, "tree_leaf_size": 10, "tree_vector_dim": 16, "tree_rebuild": 2}),
        ("RimiRec", {"tree_branching": 8, "tree_leaf_size": 10, "tree_vector_dim": 16, "tree_rebuild": 3}),
    ],
)
def test_interrupted_training_resumes_to_the_same_result(tiny, monkeypatch, model, extra):
    from recbole_rimirec import trainer as trainer_module

    settings = {**tiny, "epochs": 4, "stopping_step": 10, **extra}
    full = run(model, "tiny", config_dict=settings)

    original = trainer_module.SafeCheckpointMixin._train_epoch

    def crash_at_epoch_2(self, train_data, epoch_idx, *args, **kwargs):
        if epoch_idx == 2:
            self._save_last(epoch_idx, train_data)  # what the real epoch start saves, then the crash
            raise Interrupt
        return original(self, train_data, epoch_idx, *args, **kwargs)

    monkeypatch.setattr(trainer_module.SafeCheckpointMixin, "_train_epoch", crash_at_epoch_2)
    with pytest.raises(Interrupt):
        run(model, "tiny", config_dict={**settings, "checkpoint_dir": tiny["checkpoint_dir"] + "/b"})
    monkeypatch.setattr(trainer_module.SafeCheckpointMixin, "_train_epoch", original)
    import glob

    (last,) = glob.glob(tiny["checkpoint_dir"] + "/b/*-last.pth")
    resumed = run(
        model, "tiny", config_dict={**settings, "checkpoint_dir": tiny["checkpoint_dir"] + "/b", "resume_from": last}
    )
    assert resumed["timings"]["epochs"] == 4
    assert [p["valid_score"] for p in resumed["timings"]["valid_curve"]] == [
        p["valid_score"] for p in full["timings"]["valid_curve"]
    ]  # the curve carries on from the checkpoint, not from the resumed epoch
    assert resumed["best_valid_result"] == full["best_valid_result"]
    assert resumed["test_result"] == full["test_result"]


def test_time_capped_run_continues_from_the_epoch_it_stopped_at(tiny):
    import glob

    settings = {**tiny, "epochs": 3, "stopping_step": 10}
    full = run("SASRecAllPos", "tiny", config_dict=settings)
    capped = run(
        "SASRecAllPos",
        "tiny",
        config_dict={**settings, "time_budget_s": 1e-9, "checkpoint_dir": tiny["checkpoint_dir"] + "/b"},
    )
    assert capped["time_capped"] and capped["timings"]["epochs"] == 1
    (last,) = glob.glob(tiny["checkpoint_dir"] + "/b/*-last.pth")
    assert load_checkpoint(last)["epoch"] == 1  # the next epoch to run, not the one already done
    resumed = run(
        "SASRecAllPos",
        "tiny",
        config_dict={**settings, "checkpoint_dir": tiny["checkpoint_dir"] + "/b", "resume_from": last},
    )
    assert resumed["timings"]["epochs"] == 3 and resumed["test_result"] == full["test_result"]
    assert resumed["timings"]["train_s"] > load_checkpoint(last)["train_s"] > 0  # earlier processes' time included


def test_resume_from_a_best_checkpoint_leaves_that_file_as_it_was(tiny):
    settings = {**tiny, "epochs": 2, "stopping_step": 10}
    first = run("SASRecAllPos", "tiny", config_dict=settings)
    before = open(first["checkpoint"], "rb").read()
    resumed = run(
        "SASRecAllPos",
        "tiny",
        config_dict={**settings, "epochs": 5, "resume_from": first["checkpoint"]},
    )
    assert resumed["timings"]["epochs"] == 3  # epochs 2-4: carried on from the checkpoint's epoch
    assert resumed["checkpoint"] != first["checkpoint"]
    assert open(first["checkpoint"], "rb").read() == before


def test_checkpoint_names_are_claimed_once(tmp_path):
    from recbole_rimirec.trainer import claim_checkpoint_file

    base = str(tmp_path / "SASRec-Nov-23-2026_20-16-23.pth")
    first = claim_checkpoint_file(base)
    second = claim_checkpoint_file(base)
    (tmp_path / "SASRec-Nov-23-2026_20-16-23-3.pth").write_bytes(b"an older run's best file")
    third = claim_checkpoint_file(base)
    assert [first, second, third] == [base, base[:-4] + "-2.pth", base[:-4] + "-4.pth"]
    assert (tmp_path / "SASRec-Nov-23-2026_20-16-23-2-last.pth").is_file()


def test_runs_started_in_the_same_second_keep_their_own_checkpoints(tiny, monkeypatch):
    from recbole.trainer import trainer as recbole_trainer

    monkeypatch.setattr(recbole_trainer, "get_local_time", lambda: "Nov-23-2026_20-16-23")
    a = run("SASRecAllPos", "tiny", config_dict={**tiny, "seed": 1})
    b = run("SASRecAllPos", "tiny", config_dict={**tiny, "seed": 2})
    assert a["test_result"] != b["test_result"]  # else the check below could not tell the files apart
    assert a["checkpoint"] != b["checkpoint"] and a["last_checkpoint"] != b["last_checkpoint"]
    assert evaluate_saved(a["checkpoint"])["result"] == a["test_result"]


def test_a_saved_runs_item_vectors_build_a_rimirec_tree(tiny, tmp_path, capsys):
    import numpy as np

    from recbole_rimirec.cli import main

    sasrec = run("SASRecAllPos", "tiny", config_dict={**tiny, "epochs": 1})
    out = str(tmp_path / "items.npz")
    assert main(["--export-item-vectors", sasrec["checkpoint"], "--out", out]) == 0
    weight = load_checkpoint(sasrec["checkpoint"])["state_dict"]["item_embedding.weight"]
    with np.load(out) as saved:
        assert len(saved["tokens"]) == len(weight) - 1  # padding left out
        assert np.allclose(saved["vectors"], weight[1:].numpy())
    tree = {**TREE, "tree_vectors": "pretrained", "tree_vectors_file": out, "epochs": 1}
    assert run("RimiRec", "tiny", config_dict={**tiny, **tree})["test_result"] is not None
    capsys.readouterr()
    assert main(["--export-item-vectors", sasrec["checkpoint"]]) == 2  # no --out: one line
    assert "needs --out" in capsys.readouterr().err


def test_a_checkpoint_of_the_same_data_set_builds_a_rimirec_tree_directly(tiny, tmp_path):
    sasrec = run("SASRecAllPos", "tiny", config_dict={**tiny, "epochs": 1})
    tree = {**TREE, "tree_vectors": "pretrained", "tree_vectors_file": sasrec["checkpoint"], "epochs": 1}
    tree_file = str(tmp_path / "tree.npz")
    direct = run("RimiRec", "tiny", config_dict={**tiny, **tree, "tree_file": tree_file})
    out = str(tmp_path / "items.npz")
    from recbole_rimirec.quick_start import export_item_vectors

    export_item_vectors(sasrec["checkpoint"], out)
    exported = run("RimiRec", "tiny", config_dict={**tiny, **tree, "tree_vectors_file": out})
    assert direct["test_result"] == exported["test_result"]  # the same vectors, by id or by token
    other = {**tree, "tree_vectors_file": sasrec["checkpoint"], "tree_file": None}
    with pytest.raises(ConfigError, match="trained on 'tiny', not 'ml-100k'"):
        run("RimiRec", "ml-100k", config_dict={**tiny, **other, "data_path": None})
