"""Generator probabilities and node selection on random trees (property tests)."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recbole_rimirec.model.generator import TreeGenerator, node_log_probs
from recbole_rimirec.retrieval.selection import select_beam, select_frontier
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


@settings(max_examples=60, deadline=None)
@given(tree=trees, seed=st.integers(0, 100), budget_frac=st.floats(0.01, 1.0), max_nodes=st.integers(1, 30))
def test_selection_is_valid_disjoint_and_within_budget(tree, seed, budget_frac, max_nodes):
    n = int(tree.size[0])
    budget = max(1, int(budget_frac * n))
    lp = node_log_probs(torch.randn(4, tree.num_nodes, generator=torch.Generator().manual_seed(seed)) * 2, tree)
    sel = select_frontier(lp, tree, budget, max_nodes)
    for b in range(4):
        nodes = sel[b].nonzero().squeeze(1)
        assert 1 <= len(nodes) <= max_nodes
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
