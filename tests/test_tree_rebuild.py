"""tree_rebuild: the item tree rebuilt from the model's own item embeddings during training."""

import glob

import numpy as np
import pytest
import torch

from recbole_rimirec.checkpoint import load_checkpoint
from recbole_rimirec.errors import ConfigError
from recbole_rimirec.model.rimirec import RimiRec
from recbole_rimirec.quick_start import evaluate_saved, run
from recbole_rimirec.trainer import rebuild_due
from recbole_rimirec.tree.carry import carry_node_rows, node_item_means
from recbole_rimirec.tree.tensors import TreeTensors, tree_equal, tree_from_buffers
from tests.test_rimirec import prepare

TREE = {"tree_branching": 8, "tree_leaf_size": 10, "tree_max_depth": 2, "select_budget": 0.2, "tree_vector_dim": 16}


@pytest.fixture
def small(tiny):
    return {**tiny, **TREE}


def checkpoints(folder: str) -> tuple[str, str]:
    """The run's best and -last checkpoint files."""
    (last,) = glob.glob(folder + "/*-last.pth")
    return last.removesuffix("-last.pth") + ".pth", last


def test_rebuild_due_follows_early_stopping_or_the_epoch_count():
    # plateau: exactly when RecBole's early stopping would stop (a worse score with patience spent)
    assert rebuild_due("plateau", 0.1, 0.2, cur_step=2, stopping_step=2, epochs=9)
    assert not rebuild_due("plateau", 0.1, 0.2, cur_step=1, stopping_step=2, epochs=9)
    assert not rebuild_due("plateau", 0.2, 0.2, cur_step=5, stopping_step=2, epochs=9)  # level is a new best
    assert rebuild_due("plateau", 0.3, 0.2, cur_step=0, stopping_step=0, epochs=1, bigger=False)
    assert rebuild_due(3, 0.0, 1.0, 0, 10, epochs=3) and not rebuild_due(3, 0.0, 1.0, 0, 10, epochs=2)


def test_rebuild_after_n_epochs_is_the_tree_of_the_weights_and_saved_with_them(small):
    result = run("RimiRec", "tiny", config_dict={**small, "epochs": 3, "stopping_step": 10, "tree_rebuild": 2})
    again = evaluate_saved(result["checkpoint"], {"checkpoint_dir": small["checkpoint_dir"] + "/eval"})
    assert int(load_checkpoint(result["checkpoint"])["state_dict"]["tree_rebuilds"]) == 1  # epoch 3, the new tree
    assert again["result"] == result["test_result"]  # a fresh model installs the checkpoint's tree
    curve = result["timings"]["valid_curve"]
    assert [bool(p.get("tree_rebuild")) for p in curve] == [False, True, False]
    assert curve[-1]["valid_result"]["recall@50"] >= curve[-1]["valid_result"]["recall@10"]  # every metric kept
    _, last = checkpoints(small["checkpoint_dir"])
    state = load_checkpoint(last)  # saved at the start of epoch 3, just after the rebuild
    assert int(state["state_dict"]["tree_rebuilds"]) == 1
    config, dataset, net, *_ = prepare(small)
    rebuilt = tree_from_buffers(state["state_dict"])
    assert not tree_equal(rebuilt, net.tree)  # not the co-occurrence tree the dataset built
    # the two-run form: a tree built from the same weights as a pretrained file is the same tree
    two_run = prepare({**small, "tree_vectors": "pretrained", "tree_vectors_file": last})[1].tree
    assert tree_equal(two_run, TreeTensors(rebuilt))
    # a fresh model takes the checkpoint's tree with its weights: modules sized by it, same scores
    net.load_state_dict(state["state_dict"])
    assert tree_equal(rebuilt, net.tree) and net.generator.tree is net.tree and net.tower.tree is net.tree
    assert net.tower.shift.weight.shape[0] == rebuilt.num_nodes
    again = prepare(small)[2]
    again.load_state_dict(state["state_dict"])
    batch = torch.tensor([[1, 2, 3, 0]]), torch.tensor([3])
    again.eval(), net.eval()
    assert torch.equal(net.generator(net.forward(*batch)), again.generator(again.forward(*batch)))


def test_plateau_rebuilds_from_the_best_weights_and_restarts_patience(small, monkeypatch):
    """Scores 0.3, 0.2 (a worse one with patience 0: the rebuild), then 0.1 (the new tree's first, its best), 0.05
    (worse, patience 0): stop; the best is epoch 3's, on the new tree."""
    from recbole_rimirec import trainer as trainer_module

    scores = iter([0.3, 0.2, 0.1, 0.05, 0.05, 0.05])
    original = trainer_module.SafeCheckpointMixin._valid_epoch

    def scripted(self, valid_data, *args, **kwargs):
        _, result = original(self, valid_data, *args, **kwargs)
        score = next(scores)
        self.valid_curve[-1]["valid_score"] = score
        return score, result

    saved, used = [], []  # the item embeddings of every best checkpoint, and those the rebuild read
    save = trainer_module.SafeCheckpointMixin._save_checkpoint

    def keep(self, epoch, *args, **kwargs):
        saved.append(self.model.item_embedding.weight.detach().clone())
        return save(self, epoch, *args, **kwargs)

    rebuild = RimiRec.rebuild_tree

    def watch(net, dataset):
        used.append(net.item_embedding.weight.detach().clone())
        return rebuild(net, dataset)

    monkeypatch.setattr(trainer_module.SafeCheckpointMixin, "_valid_epoch", scripted)
    monkeypatch.setattr(trainer_module.SafeCheckpointMixin, "_save_checkpoint", keep)
    monkeypatch.setattr(RimiRec, "rebuild_tree", watch)
    result = run("RimiRec", "tiny", config_dict={**small, "epochs": 6, "stopping_step": 0, "tree_rebuild": "plateau"})
    assert len(saved) == 2 and len(used) == 1 and torch.equal(used[0], saved[0])  # from epoch 1's (best) weights
    curve = result["timings"]["valid_curve"]
    assert [p["valid_score"] for p in curve] == [0.3, 0.2, 0.1, 0.05]  # early stopping started again once
    assert [bool(p.get("tree_rebuild")) for p in curve] == [False, True, False, False]
    best, last = checkpoints(small["checkpoint_dir"])
    state = load_checkpoint(best)
    assert int(state["state_dict"]["tree_rebuilds"]) == 1 and state["epoch"] == 2  # epoch 3 (index 2), new tree
    assert tree_equal(
        tree_from_buffers(state["state_dict"]), TreeTensors(tree_from_buffers(load_checkpoint(last)["state_dict"]))
    )


def test_rebuild_vectors_join_the_model_with_other_parts(small):
    config, dataset, net, train, *_ = prepare({**small, "tree_rebuild_vectors": "cooccurrence+model"})
    tree = net.rebuild_tree(train.dataset)
    assert tree.meta["vectors"] == "cooccurrence+model" and int(net.tree_rebuilds) == 1
    assert tree_equal(tree, net.tree) and not tree_equal(dataset.tree, net.tree)
    assert net.generator.tree is net.tree and net.tower.tree is net.tree


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            {"tree_rebuild": 0},
            r"tree_rebuild must be ~ \(None on the command line\), 'plateau' or a number of epochs >= 1, not 0",
        ),
        ({"tree_rebuild": "soon"}, "tree_rebuild must be"),
        ({"tree_rebuild": True}, "tree_rebuild must be"),
        ({"tree_rebuild_vectors": "model+bogus"}, "tree_rebuild_vectors 'model\\+bogus' is not one of"),
        ({"tree_rebuild_vectors": "pretrained"}, "tree_rebuild_vectors: pretrained needs tree_vectors_file"),
    ],
)
def test_rebuild_keys_are_checked(small, bad, message):
    with pytest.raises(ConfigError, match=message):
        prepare({**small, **bad})


def test_old_checkpoints_without_the_rebuild_counter_still_load(small):
    net = prepare(small)[2]
    state = {k: v for k, v in net.state_dict().items() if k != "tree_rebuilds"}
    fresh = prepare(small)[2]
    fresh.load_state_dict(state)
    assert int(fresh.tree_rebuilds) == 0 and np.allclose(
        fresh.item_embedding.weight.detach().numpy(), net.item_embedding.weight.detach().numpy()
    )


def test_carried_rows_onto_the_same_tree_are_the_old_rows(small):
    net = prepare(small)[2]
    rows = torch.randn(net.tree.num_nodes, 5)
    carried = carry_node_rows(rows, net.tree.codes, net.tree)
    used = torch.unique(net.tree.codes[1:][net.tree.codes[1:] > 0])  # the nodes that hold items
    assert torch.allclose(carried[used], rows[used], atol=1e-6) and torch.all(carried[0] == 0)


def test_node_item_means_are_the_means_of_each_nodes_items(small):
    net = prepare(small)[2]
    vectors = torch.randn(net.n_items, 4)
    means = node_item_means(vectors, net.tree)
    for node in range(net.tree.num_nodes):
        items = net.tree.perm[net.tree.lo[node] : net.tree.hi[node]]
        assert torch.allclose(means[node], vectors[items].mean(0), atol=1e-5)


def test_a_warm_rebuild_onto_the_same_tree_keeps_the_encoder_and_tower_outputs(small):
    config, dataset, net, *_ = prepare(small)
    with torch.no_grad():
        net.code_embedding.weight[1:].normal_()  # row 0 is padding, zero
        net.tower.shift.weight.normal_()
    net.eval()
    seq, length = torch.tensor([[1, 2, 3, 0]]), torch.tensor([3])
    h = net.forward(seq, length)
    nodes = torch.arange(1, net.tree.num_nodes)
    user = net.tower.user(h.expand(len(nodes), -1), nodes)
    net.set_tree(dataset.tree, warm=True)
    assert torch.allclose(net.forward(seq, length), h, atol=1e-5)
    assert torch.allclose(net.tower.user(h.expand(len(nodes), -1), nodes), user, atol=1e-5)
    # the generator starts from the items' mean embeddings and log sizes: the global head's mass per node, roughly
    mass = torch.zeros(net.tree.num_nodes).index_add_(
        0, net.tree.leaf[1:], (h @ net.item_embedding.weight.T)[0, 1:].softmax(0)
    )
    leaves = net.tree.is_leaf.nonzero().squeeze(1)
    p = net.generator(h)[0, leaves].exp()
    assert torch.corrcoef(torch.stack([p, mass[leaves]]))[0, 1] > 0.9


def test_kept_parameters_keep_their_adam_state_and_new_ones_start_empty():
    from recbole_rimirec.trainer import carry_optimizer_state

    kept, dropped, added = (torch.nn.Parameter(torch.randn(3)) for _ in range(3))
    old = torch.optim.Adam([kept, dropped], lr=0.1)
    (kept.sum() + dropped.sum()).backward()
    old.step()
    new = carry_optimizer_state(old, torch.optim.Adam([kept, added], lr=0.1))
    assert new.state[kept] is old.state[kept] and int(new.state[kept]["step"]) == 1
    assert added not in new.state and dropped not in new.state


def test_a_checkpoint_whose_tree_is_broken_is_one_line_error(small):
    net = prepare(small)[2]
    state = dict(net.state_dict())
    state["tree.hi"] = state["tree.hi"].clone()
    state["tree.hi"][-1] += 5  # a node past the end of the item order
    with pytest.raises(ConfigError, match="the checkpoint's item tree is not a valid tree"):
        prepare(small)[2].load_state_dict(state)
