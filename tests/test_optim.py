"""LazyAdam and the sparse item gradients (``sparse_item_grad``): same losses, rows updated lazily."""

import copy

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from recbole_rimirec.errors import ConfigError
from recbole_rimirec.model.layers import sampled_softmax_loss
from recbole_rimirec.optim import LazyAdam
from recbole_rimirec.utils import get_trainer
from tests.test_rimirec import TREE

N, H = 12, 3


def _pair(weight_decay=0.0):
    """A dense table with Adam and the same table with sparse lookups and LazyAdam, plus a dense layer each."""
    torch.manual_seed(0)
    dense, lazy = torch.nn.Embedding(N, H), torch.nn.Embedding(N, H, sparse=True)
    lin_a, lin_b = torch.nn.Linear(H, 1), torch.nn.Linear(H, 1)
    lazy.load_state_dict(dense.state_dict())
    lin_b.load_state_dict(lin_a.state_dict())
    adam = torch.optim.Adam([*dense.parameters(), *lin_a.parameters()], lr=0.05, weight_decay=weight_decay)
    lazy_adam = LazyAdam([*lazy.parameters(), *lin_b.parameters()], lr=0.05, weight_decay=weight_decay)
    return (dense, lin_a, adam), (lazy, lin_b, lazy_adam)


def _step(table, layer, opt, ids):
    opt.zero_grad()
    (layer(table(ids)).squeeze(-1) ** 2).sum().backward()
    opt.step()


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_lazy_adam_is_adam_when_every_row_is_looked_up(weight_decay):
    a, b = _pair(weight_decay)
    for step in range(6):
        ids = torch.cat([torch.arange(N), torch.randint(0, N, (7,))])  # every row, some twice
        _step(*a, ids)
        _step(*b, ids)
        assert b[0].weight.grad is not None and b[0].weight.grad.is_sparse
        for x, y in zip(
            [*a[0].parameters(), *a[1].parameters()], [*b[0].parameters(), *b[1].parameters()], strict=True
        ):
            assert torch.allclose(x, y, atol=1e-6), step


def _reference(weight0, batches, lr=0.05, b1=0.9, b2=0.999, eps=1e-8):
    """Lazy Adam by hand: a row's moments and value change only in the steps whose batch looks it up."""
    w, m, v = weight0.copy(), np.zeros_like(weight0), np.zeros_like(weight0)
    for t, (ids, grads) in enumerate(batches, start=1):
        g = np.zeros_like(w)
        np.add.at(g, ids, grads)  # a row looked up twice gets both gradients
        for r in np.unique(ids):
            m[r] = b1 * m[r] + (1 - b1) * g[r]
            v[r] = b2 * v[r] + (1 - b2) * g[r] ** 2
            w[r] -= lr / (1 - b1**t) * m[r] / (np.sqrt(v[r] / (1 - b2**t)) + eps)
    return w


@given(st.lists(st.lists(st.integers(0, N - 1), min_size=1, max_size=8), min_size=1, max_size=5))
def test_lazy_adam_moves_only_the_rows_looked_up_by_the_lazy_rule(batches):
    torch.manual_seed(1)
    table = torch.nn.Embedding(N, H, sparse=True)
    start = table.weight.detach().numpy().copy()
    opt = LazyAdam(table.parameters(), lr=0.05)
    seen, record = set(), []
    for ids in batches:
        idx = torch.tensor(ids)
        grads = torch.randn(len(ids), H)
        opt.zero_grad()
        (table(idx) * grads).sum().backward()  # d/d row = the sum of its grads
        opt.step()
        seen |= set(ids)
        record.append((np.array(ids), grads.numpy()))
    got = table.weight.detach().numpy()
    untouched = sorted(set(range(N)) - seen)
    assert np.array_equal(got[untouched], start[untouched])
    assert np.allclose(got, _reference(start, record), atol=1e-5)


def test_lazy_adam_resumes_from_its_state_dict():
    _, (table, layer, opt) = _pair()
    batches = [torch.randint(0, N, (5,)) for _ in range(5)]
    for ids in batches[:3]:
        _step(table, layer, opt, ids)
    saved = copy.deepcopy((table.state_dict(), layer.state_dict(), opt.state_dict()))  # state_dict holds references
    for ids in batches[3:]:
        _step(table, layer, opt, ids)
    _, (table2, layer2, opt2) = _pair()
    table2.load_state_dict(saved[0])
    layer2.load_state_dict(saved[1])
    opt2.load_state_dict(saved[2])
    for ids in batches[3:]:
        _step(table2, layer2, opt2, ids)
    assert torch.allclose(table.weight, table2.weight) and torch.allclose(layer.weight, layer2.weight)


def test_sampled_losses_with_sparse_lookups_have_the_same_value_and_gradient():
    from tests.test_twotower import _tower

    tower, weight, h, target = _tower()
    prob = torch.rand(len(weight))
    prob[0] = 0
    prob /= prob.sum()
    for loss in (
        lambda w, sparse, g: tower.sampled_loss(h, target, w, 16, generator=g, sparse=sparse),
        lambda w, sparse, g: sampled_softmax_loss(h, target, w, prob, 32, generator=g, sparse=sparse),
    ):
        values, grads = [], []
        for sparse in (False, True):
            w = weight.clone().requires_grad_()
            value = loss(w, sparse, torch.Generator().manual_seed(0))
            value.backward()
            assert w.grad.is_sparse == sparse
            values.append(value.detach())
            grads.append(w.grad.to_dense())
        assert torch.allclose(values[0], values[1])
        assert torch.allclose(grads[0], grads[1], atol=1e-6)


@pytest.mark.parametrize("model", ["RimiRec", "SASRecAllPos"])
def test_sparse_item_grad_trains_end_to_end(tiny, model):
    from recbole_rimirec.quick_start import run

    keys = {"sparse_item_grad": True, "global_negatives": 32, "tower_negatives": 4, "epochs": 1}
    if model == "RimiRec":
        keys.update(TREE)
    result = run(model, "tiny", config_dict={**tiny, **keys})
    assert result["test_result"]["hit@50"] > 0
    with pytest.raises(ConfigError, match="global_negatives"):
        run(model, "tiny", config_dict={**tiny, **keys, "global_negatives": None})


def test_sparse_item_grad_names_what_it_needs(tiny):
    from recbole_rimirec.quick_start import run

    keys = {**tiny, "sparse_item_grad": True, "global_negatives": 32, "tower_negatives": 4}
    with pytest.raises(ConfigError, match="tower_negatives"):
        run("RimiRec", "tiny", config_dict={**keys, "tower_negatives": None})
    with pytest.raises(ConfigError, match="learner: adam"):
        run("RimiRec", "tiny", config_dict={**keys, "learner": "sgd"})


@pytest.mark.parametrize("model", ["ComiRecSA", "ComiRecDR", "MIND"])
def test_sparse_item_grad_for_the_multi_interest_baselines(tiny, model):
    from tests.test_rimirec import prepare

    config, _, net, train, _, _ = prepare({**tiny, "sparse_item_grad": True}, model)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    assert isinstance(trainer.optimizer, LazyAdam)
    batch = next(iter(train))
    net.calculate_loss(batch).backward()
    grad = net.item_embedding.weight.grad
    assert grad.is_sparse
    touched = set(grad.coalesce().indices()[0].tolist())
    assert set(batch[net.POS_ITEM_ID].tolist()) <= touched  # the targets' rows at least
    trainer.optimizer.step()


def test_sparse_item_grad_for_the_multi_interest_baselines_names_the_loss(tiny):
    from recbole_rimirec.quick_start import run

    with pytest.raises(ConfigError, match="sparse_item_grad needs loss_type: SSM"):
        run("ComiRecSA", "tiny", config_dict={**tiny, "sparse_item_grad": True, "loss_type": "CE"})
    with pytest.raises(ConfigError, match="learner: adam"):
        run("MIND", "tiny", config_dict={**tiny, "sparse_item_grad": True, "learner": "sgd"})


@pytest.mark.parametrize("model", ["RimiRec", "SASRecAllPos"])
def test_sparse_item_grad_with_auto_on_a_small_library_names_the_key(tiny, model):
    from recbole_rimirec.quick_start import run

    keys = {**tiny, "sparse_item_grad": True, "global_negatives": "auto", "tower_negatives": 4, **TREE}
    with pytest.raises(ConfigError, match="global_negatives set to a number.*auto is the full softmax"):
        run(model, "tiny", config_dict=keys)


def test_the_trainer_builds_lazy_adam_and_the_table_gets_a_sparse_gradient(tiny):
    from tests.test_rimirec import prepare

    config, _, model, train, _, _ = prepare({**tiny, "sparse_item_grad": True, "global_negatives": 32}, "SASRecAllPos")
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    assert isinstance(trainer.optimizer, LazyAdam)
    model.calculate_loss(next(iter(train))).backward()
    assert model.item_embedding.weight.grad.is_sparse
    trainer.optimizer.step()  # a step with the sparse table and the dense encoder together
