"""tree-report on a saved RimiRec run of the tiny set (whose items carry planted circles)."""

import json

import pytest
import torch

from recbole_rimirec.cli import main
from recbole_rimirec.tree_report import category_labels, level_shapes, purity, tree_report
from tests.test_generator_selection import random_tree

TREE = {"tree_branching": 8, "tree_leaf_size": 10, "tree_max_depth": 2, "select_budget": 0.2, "tree_vector_dim": 16}


@pytest.fixture
def saved(tiny):
    from recbole_rimirec.quick_start import run

    return run("RimiRec", "tiny", config_dict={**tiny, **TREE, "epochs": 1})["checkpoint"]


def test_level_shapes_count_every_item_once_per_level():
    tree = random_tree(200, 4, 12, 3, 5)
    rows = level_shapes(tree)
    assert rows[0]["items"] == 199  # level 1 partitions the library (item 0 is padding)
    for row in rows:
        assert row["size_min"] <= row["size_median"] <= row["size_max"] and 0 < row["balance"] <= 1 + 1e-9
        assert row["leaves"] <= row["nodes"]


def test_purity_is_perfect_when_categories_are_the_nodes_and_chance_for_a_shuffle():
    tree = random_tree(300, 5, 20, 2, 3)
    labels = tree.codes[:, 0].numpy() + 1  # the level-1 node itself, as a category
    labels[0] = 0
    first = purity(tree, labels, seed=1)[0]
    assert first["nmi"] == pytest.approx(1.0) and first["ari"] == pytest.approx(1.0)
    assert first["random_ari"] < 0.2


def test_token_sequence_categories_take_each_items_most_common_token():
    class Items:  # item_feat of a token_seq field: two tokens per item, 0-padded
        def __init__(self, ids):
            self.ids = ids

        def __len__(self):
            return len(self.ids)

        def __getitem__(self, field):
            return self.ids

    class Data:
        item_feat = Items(torch.tensor([[0, 0], [1, 3], [2, 3], [4, 3], [1, 0]]))

    assert category_labels(Data(), "attributes").tolist() == [0, 3, 3, 3, 1]  # 3 is the commonest token


def test_tree_report_of_a_saved_run(saved, tmp_path, capsys):
    report = tree_report(saved, png=None)
    assert report["field"] == "circle"  # the tiny set's first token field
    assert [r["level"] for r in report["shape"]] == [1, 2]
    for row in report["purity"]:
        assert row["nmi"] > row["random_nmi"]  # the co-occurrence tree finds the planted circles
    for row in report["generator_accuracy"].values():
        assert 0 <= row["generator@1"] <= row["generator@5"] <= row["generator@10"] <= 1
    out = tmp_path / "tree_report.json"
    assert main(["tree-report", saved, "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["shape"] == report["shape"] and "level 1:" in capsys.readouterr().out
    if written["picture"] is not None:  # matplotlib installed
        assert (tmp_path / "tree_report.png").stat().st_size > 0
    assert main(["tree-report", saved, "--field", "nope"]) == 2
    assert "--field nope: not a token item field" in capsys.readouterr().err


def test_a_field_the_run_did_not_load_can_be_read_for_the_report(tiny, capsys):
    from recbole_rimirec.quick_start import run

    inter_only = {"load_col": {"inter": ["user_id", "item_id", "timestamp"]}}
    saved = run("RimiRec", "tiny", config_dict={**tiny, **TREE, **inter_only, "epochs": 1})["checkpoint"]
    assert main(["tree-report", saved, "--field", "circle"]) == 2
    assert "(loaded: none)" in capsys.readouterr().err
    report = tree_report(saved, field="circle", load_item_field=True)
    assert report["purity"][0]["nmi"] > report["purity"][0]["random_nmi"]
