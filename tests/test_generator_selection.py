"""Generator probabilities and node selection on random trees (property tests)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recbole_rimirec.model.generator import (
    TreeGenerator,
    distillation_loss,
    node_log_probs,
    node_mass_log_probs,
    path_log_probs,
)
from recbole_rimirec.retrieval.selection import LEAF_ORDERS, select_beam, select_frontier, select_leaves
from recbole_rimirec.tree.itemtree import build_tree
from recbole_rimirec.tree.tensors import TreeTensors


def random_tree(n_items, branching, leaf, depth, seed):
    x = np.random.default_rng(seed).standard_normal((n_items, 6)).astype(np.float32)
    return TreeTensors(build_tree(x, branching, leaf, depth, seed))


trees = st.builds(
    random_tree,
    n_items=st.integers(10, 200),
    branching=st.integers(2, 6),
    leaf=st.integers(2, 20),
    depth=st.integers(1, 4),
    seed=st.integers(0, 5),
)


@settings(max_examples=40, deadline=None)
@given(tree=trees, seed=st.integers(0, 100))
def test_the_path_loss_is_the_leaf_column_of_every_node_log_probability(tree, seed):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(7, tree.num_nodes, generator=g) * 3).requires_grad_()
    target = torch.randint(1, int(tree.size[0]) + 1, (7,), generator=g)
    path = path_log_probs(logits, tree, target)
    full = node_log_probs(logits, tree).gather(1, tree.leaf[target][:, None])[:, 0]
    assert torch.allclose(path, full, atol=1e-5)
    (grad_path,) = torch.autograd.grad(path.sum(), logits)
    (grad_full,) = torch.autograd.grad(full.sum(), logits)
    assert torch.isfinite(grad_path).all() and torch.allclose(grad_path, grad_full, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(tree=trees, seed=st.integers(0, 100))
def test_children_share_their_parents_mass(tree, seed):
    logits = torch.randn(3, tree.num_nodes, generator=torch.Generator().manual_seed(seed)) * 3
    lp = node_log_probs(logits, tree)
    p = lp.exp()
    assert torch.allclose(p[:, 0], torch.ones(3))
    for v in range(tree.num_nodes):
        lo, hi = int(tree.child_lo[v]), int(tree.child_hi[v])
        if hi > lo:
            assert torch.allclose(p[:, lo:hi].sum(1), p[:, v], atol=1e-5)
    assert torch.allclose(p[:, tree.leaf[1:].unique()].sum(1), torch.ones(3), atol=1e-4)  # leaves partition mass


def select(rule, lp, tree, budget, max_nodes):
    """One selection rule by its select_method name."""
    if rule == "frontier":
        return select_frontier(lp, tree, budget, max_nodes)
    return select_leaves(lp, tree, budget, max_nodes, rule)


RULES = ("frontier", *LEAF_ORDERS)


@pytest.mark.parametrize("rule", RULES)
@settings(max_examples=60, deadline=None)
@given(tree=trees, seed=st.integers(0, 100), budget_frac=st.floats(0.01, 1.0), max_nodes=st.integers(1, 30))
def test_selection_is_valid_disjoint_and_within_budget(rule, tree, seed, budget_frac, max_nodes):
    n = int(tree.size[0])
    budget = max(1, int(budget_frac * n))
    lp = node_log_probs(torch.randn(4, tree.num_nodes, generator=torch.Generator().manual_seed(seed)) * 2, tree)
    sel = select(rule, lp, tree, budget, max_nodes)
    assert sel.shape == lp.shape  # every emitted node is a node of the tree
    for b in range(4):
        nodes = sel[b].nonzero().squeeze(1)
        assert 1 <= len(nodes) <= max_nodes
        assert rule == "frontier" or bool(tree.is_leaf[nodes].all())
        covered = torch.zeros(n, dtype=torch.long)
        for v in nodes.tolist():
            covered[int(tree.lo[v]) : int(tree.hi[v])] += 1
        assert covered.max() <= 1  # disjoint: no node nested in another, no overlap
        total = int(covered.sum())
        assert total <= budget or len(nodes) == 1  # the budget is an upper bound
        if len(nodes) < max_nodes and total < budget:  # stopped short: no uncovered leaf fits in what is left
            leaves = tree.is_leaf.nonzero().squeeze(1).tolist()
            free = [v for v in leaves if covered[int(tree.lo[v]) : int(tree.hi[v])].sum() == 0]
            assert all(int(tree.size[v]) > budget - total for v in free)


@pytest.mark.parametrize("rule", RULES)
@settings(max_examples=30, deadline=None)
@given(tree=trees, seed=st.integers(0, 100))
def test_the_whole_library_as_budget_covers_it_and_leaf_rules_emit_every_leaf(rule, tree, seed):
    lp = node_log_probs(torch.randn(3, tree.num_nodes, generator=torch.Generator().manual_seed(seed)) * 2, tree)
    sel = select(rule, lp, tree, int(tree.size[0]), tree.num_nodes)
    covered = sel.long() @ tree.size
    assert (covered == int(tree.size[0])).all()  # every rule covers the library when it may
    if rule != "frontier":
        assert torch.equal(sel, tree.is_leaf[None, :].expand_as(sel))


def test_leaves_first_spends_the_budget_where_the_mass_is():
    tree = random_tree(120, 3, 10, 2, 0)
    top = [v for v in range(1, tree.num_nodes) if int(tree.depth[v]) == 1 and not bool(tree.is_leaf[v])][0]
    kids = list(range(int(tree.child_lo[top]), int(tree.child_hi[top])))
    small, big = min(kids, key=lambda v: int(tree.size[v])), max(kids, key=lambda v: int(tree.size[v]))
    logits = torch.full((1, tree.num_nodes), -5.0)
    logits[0, top] = 5.0  # the circle takes most of the mass...
    logits[0, small], logits[0, big] = 5.0, 4.0  # ...its smallest sub-circle most of the circle's
    lp = node_log_probs(logits, tree)
    budget = int(tree.size[top])  # the whole circle fits
    assert select_frontier(lp, tree, budget, 1)[0, top]  # the frontier emits the circle whole
    by_mass = select_leaves(lp, tree, budget, 1, "leaves")
    assert by_mass[0, small] and by_mass.sum() == 1
    other = torch.full_like(logits, -5.0)  # two equally likely sub-circles: density takes the smaller
    other[0, top], other[0, small], other[0, big] = 5.0, 3.0, 3.0
    lp = node_log_probs(other, tree)
    assert select_leaves(lp, tree, budget, 1, "density")[0, small]
    assert select_leaves(lp, tree, budget, 1, "leaves").sum() == 1


def test_unknown_leaf_order_is_refused():
    tree = random_tree(30, 3, 10, 2, 0)
    with pytest.raises(ValueError, match="order"):
        select_leaves(torch.zeros(1, tree.num_nodes), tree, 5, 2, "nope")


def test_whole_budget_keeps_everything():
    tree = random_tree(100, 4, 10, 3, 0)
    sel = select_frontier(torch.zeros(2, tree.num_nodes), tree, 99, 10)
    assert sel[:, 0].all() and sel.sum() == 2  # the root covers the library


def test_generator_loss_is_path_nll():
    tree = random_tree(60, 3, 8, 3, 1)
    gen = TreeGenerator(tree, 8)
    h = torch.randn(5, 8)
    target = torch.randint(1, 60, (5,))
    lp = gen(h)
    codes = tree.codes[target]
    manual = torch.zeros(5)
    for i in range(5):
        for node in codes[i][codes[i] > 0]:
            kids = slice(int(tree.child_lo[tree.parent[node]]), int(tree.child_hi[tree.parent[node]]))
            logits = h[i] @ gen.node_embedding.weight[kids].T + gen.node_bias[kids]
            manual[i] -= torch.log_softmax(logits, 0)[int(node) - kids.start]
    assert torch.allclose(gen.loss(h, target), manual.mean(), atol=1e-5)
    assert torch.allclose(-lp.gather(1, tree.leaf[target][:, None]).squeeze(1), manual, atol=1e-5)


def test_distillation_on_one_hot_items_is_the_path_nll():
    tree = random_tree(60, 3, 8, 3, 2)
    gen = TreeGenerator(tree, 8)
    h, target = torch.randn(5, 8), torch.randint(1, 60, (5,))
    one_hot = torch.nn.functional.one_hot(target, 60).float()  # [5, n_items]
    assert torch.allclose(distillation_loss(gen(h), one_hot, tree), gen.loss(h, target), atol=1e-5)


@given(seed=st.integers(0, 1000))
@settings(max_examples=25, deadline=None)
def test_distillation_is_smallest_when_the_generator_holds_the_teachers_leaf_mass(seed):
    """Cross-entropy >= entropy: the generator that equals the teacher's mass per leaf scores lowest."""
    tree = random_tree(40, 3, 6, 2, seed % 7)
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(3, 40, generator=g), 1)
    probs[:, 0] = 0  # padding
    probs = probs / probs.sum(1, keepdim=True)
    exact = node_mass_log_probs(probs, tree)  # [3, N] log P(node) of a generator equal to the teacher
    # a generator's layout: the root holds everything, every parent its children's sum
    assert torch.allclose(exact[:, 0].exp(), torch.ones(3))
    for depth in range(1, tree.max_depth + 1):
        for node in tree.level(depth).tolist():
            kids = slice(int(tree.child_lo[node]), int(tree.child_hi[node]))
            if kids.stop > kids.start:
                assert torch.allclose(exact[:, kids].exp().sum(1), exact[:, node].exp(), atol=1e-5)
    other = node_log_probs(torch.randn(3, tree.num_nodes, generator=g), tree)
    assert distillation_loss(exact, probs, tree) <= distillation_loss(other, probs, tree) + 1e-6


@settings(max_examples=60, deadline=None)
@given(tree=trees, seed=st.integers(0, 100), beam=st.integers(1, 12))
def test_beam_is_valid_disjoint_and_best_at_its_depth(tree, seed, beam):
    lp = node_log_probs(torch.randn(3, tree.num_nodes, generator=torch.Generator().manual_seed(seed)) * 2, tree)
    sel = select_beam(lp, tree, beam)
    n = int(tree.size[0])
    for b in range(3):
        nodes = sel[b].nonzero().squeeze(1)
        assert 1 <= len(nodes) <= beam and not sel[b, 0]
        covered = torch.zeros(n, dtype=torch.long)
        for v in nodes.tolist():
            covered[int(tree.lo[v]) : int(tree.hi[v])] += 1
        assert covered.max() <= 1
        # a kept internal node means the search ran out of depth, never of children
        assert all(bool(tree.is_leaf[v]) or int(tree.depth[v]) == tree.max_depth for v in nodes.tolist())
    if beam >= int(tree.is_leaf.sum()):
        assert torch.equal(sel, tree.is_leaf[None, :].expand_as(sel) & (torch.arange(tree.num_nodes) != 0))
