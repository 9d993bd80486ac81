"""explain: a user's selected nodes and retrieved items from a saved RimiRec run (tiny set)."""

import json

import pytest
import torch

from recbole_rimirec.cli import main
from recbole_rimirec.explain import explain
from recbole_rimirec.quick_start import load_saved, run

TREE = {"tree_branching": 8, "tree_leaf_size": 10, "tree_max_depth": 2, "select_budget": 0.2, "tree_vector_dim": 16}
RECORD_KEYS = {"user", "history_length", "history", "levels", "nodes", "top", "library_fraction"}
NODE_KEYS = {"id", "level", "path", "prob", "size", "features", "items"}


@pytest.fixture
def saved(tiny):
    return run("RimiRec", "tiny", config_dict={**tiny, **TREE})["checkpoint"]


def test_explained_nodes_are_real_disjoint_and_the_models_own(saved):
    records = explain(saved, sample=3)
    assert len(records) == 3 and len({r["user"] for r in records}) == 3
    again = load_saved(saved)
    net, dataset = again["model"].eval(), again["dataset"]
    tree = net.tree
    test = again["splits"][2]
    rows = {}
    for batch in test:
        inter = batch[0]
        for pos, uid in enumerate(inter[dataset.uid_field].tolist()):
            rows[str(dataset.id2token(dataset.uid_field, uid))] = inter[torch.tensor([pos])]
    for record in records:
        assert set(record) == RECORD_KEYS
        row = rows[record["user"]]
        with torch.no_grad():
            log_p = net.generator(net.forward(row[net.ITEM_SEQ], row[net.ITEM_SEQ_LEN]))[0]
            _, top_ids, _, items = net.retrieve(row, 10)
        ids = [n["id"] for n in record["nodes"]]
        assert all(0 < n < tree.num_nodes for n in ids)  # real nodes
        for node in record["nodes"]:
            assert set(node) == NODE_KEYS
            assert node["prob"] == pytest.approx(float(log_p[node["id"]].exp()), rel=1e-5)
            assert node["size"] == int(tree.size[node["id"]]) and node["path"][-1] == node["id"]
            assert node["level"] == len(node["path"])
        paths = [set(n["path"]) for n in record["nodes"]]
        assert all(a["id"] not in paths[j] for i, a in enumerate(record["nodes"]) for j in range(len(paths)) if j != i)
        assert sum(n["size"] for n in record["nodes"]) == int(items[0])
        tokens = [str(dataset.id2token(dataset.iid_field, i)) for i in top_ids[0].tolist() if i > 0]
        assert [t["item"] for t in record["top"]] == tokens  # the evaluation's own list
        assert all(t["node"] in ids for t in record["top"])
        for shown in record["levels"].values():
            assert all(n["partly"] == any(n["id"] in m["path"][:-1] for m in record["nodes"]) for n in shown)
        for level, shown in record["levels"].items():
            assert all(int(tree.depth[n["id"]]) == int(level) for n in shown)
            assert [n["prob"] for n in shown] == sorted((n["prob"] for n in shown), reverse=True)


def test_explain_command_prints_json_and_text(saved, capsys):
    assert main(["explain", saved, "--sample", "2", "--json"]) == 0
    users = json.loads(capsys.readouterr().out)["users"]
    assert len(users) == 2 and set(users[0]) == RECORD_KEYS
    assert main(["explain", saved, "--user", users[0]["user"]]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"user {users[0]['user']}:") and "searched nodes" in text and "final list" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--user", "no-such-user"], "user 'no-such-user' is not in data set tiny"),
        (["--sample", "0"], "--sample must be at least 1"),
    ],
)
def test_explain_mistakes_are_one_line(saved, capsys, args, message):
    assert main(["explain", saved, *args]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {message}" or err.startswith(f"error: {message}")
    assert "Traceback" not in err


def test_explain_refuses_another_model(tiny, capsys):
    other = run("SASRecAllPos", "tiny", config_dict={**tiny, "epochs": 1})["checkpoint"]
    assert main(["explain", other, "--sample", "1"]) == 2
    assert "explain shows RimiRec's nodes" in capsys.readouterr().err
