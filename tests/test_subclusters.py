"""Sub-clusters of the leaves: the split, the two-stage selection and the search over parts."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recbole_rimirec.errors import ConfigError, check_item_budget
from recbole_rimirec.model.generator import node_log_probs
from recbole_rimirec.retrieval.index import NodeIndex
from recbole_rimirec.retrieval.selection import (
    LEAF_ORDERS,
    budget_items,
    budget_prefix,
    group_logsumexp,
    pair_parts,
    select_leaves,
    select_subclusters,
    subcluster_budgets,
)
from recbole_rimirec.tree.subclusters import batched_kmeans, leaf_parts, split_leaves
from tests.test_generator_selection import trees


def vectors_for(tree, seed, dim=5):
    return torch.randn(int(tree.size[0]) + 1, dim, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=40, deadline=None)
@given(tree=trees, seed=st.integers(0, 50), sub_size=st.integers(1, 12), max_clusters=st.sampled_from([1, 2, 3, 64]))
def test_the_split_keeps_every_leaf_and_tiles_it_with_its_clusters(tree, seed, sub_size, max_clusters):
    split = split_leaves(vectors_for(tree, seed), tree, sub_size, max_clusters=max_clusters, max_elements=50)
    n = int(tree.size[0])
    assert sorted(split.perm.tolist()) == sorted(tree.perm.tolist())  # a permutation of the same items
    for leaf in tree.is_leaf.nonzero().squeeze(1).tolist():
        lo, hi = int(tree.lo[leaf]), int(tree.hi[leaf])
        assert set(split.perm[lo:hi].tolist()) == set(tree.perm[lo:hi].tolist())  # every node keeps its items
        mine = (split.leaf == leaf).nonzero().squeeze(1)
        parts = -(-(hi - lo) // (max_clusters * sub_size))  # a large leaf is clustered in parts
        assert len(mine) <= max(1, -(-(hi - lo) // sub_size)) + parts - 1  # about ceil(|leaf| / sub_size) clusters
        assert int(split.size[mine].sum()) == hi - lo
        assert bool(((split.lo[mine] >= lo) & (split.hi[mine] <= hi)).all())
    assert split.lo[0] == 0 and split.hi[-1] == n and bool((split.lo[1:] == split.hi[:-1]).all())  # tiles, in order
    assert bool((split.size > 0).all())
    for c in range(len(split.size)):  # each item's cluster is the range that holds it
        items = split.perm[int(split.lo[c]) : int(split.hi[c])]
        assert bool((split.cluster[items] == c).all())
    assert split.cluster[0] == -1


@settings(max_examples=30, deadline=None)
@given(tree=trees, seed=st.integers(0, 50), cap=st.integers(1, 10))
def test_leaf_parts_cut_only_large_leaves_into_bounded_consecutive_parts(tree, seed, cap):
    vectors = vectors_for(tree, seed)
    direction = torch.randn(vectors.shape[1], generator=torch.Generator().manual_seed(0))
    perm, unit = leaf_parts(vectors, tree, cap)
    assert bool((unit[1:] - unit[:-1] >= 0).all()) and int(unit[0]) == 0  # parts numbered in tree order
    _, count = torch.unique_consecutive(unit, return_counts=True)
    assert int(count.max()) <= cap
    for leaf in tree.is_leaf.nonzero().squeeze(1).tolist():
        lo, hi = int(tree.lo[leaf]), int(tree.hi[leaf])
        if hi == lo:
            continue
        assert set(perm[lo:hi].tolist()) == set(tree.perm[lo:hi].tolist())  # every node keeps its items
        assert len(set(unit[lo:hi].tolist())) == -(-(hi - lo) // cap)
        if hi - lo <= cap:
            assert torch.equal(perm[lo:hi], tree.perm[lo:hi])  # a small leaf is left as it is
        else:  # a cut leaf is ordered along the direction, so each part is a slab of it
            along = vectors[perm[lo:hi]] @ direction
            assert bool((along[1:] >= along[:-1]).all())
    assert len(set(unit.tolist())) == int(unit.max()) + 1  # no part id is skipped or shared between leaves


def test_the_kmeans_runs_stay_bounded_when_cold_items_fill_one_leaf(monkeypatch):
    from recbole_rimirec.tree import subclusters
    from recbole_rimirec.tree.itemtree import build_tree
    from recbole_rimirec.tree.tensors import TreeTensors

    co = np.random.default_rng(0).standard_normal((401, 4)).astype(np.float32)
    co[100:] = 0.0  # items 100-400 without co-occurrence: the root's cold child, never split
    tree = TreeTensors(build_tree(co, 3, 10, 2))
    assert int(tree.size[tree.is_leaf].max()) == 301
    runs, kmeans = [], subclusters.batched_kmeans

    def recording(x, real, k, iters=10, seed=0):
        runs.append((x.shape[0] * x.shape[1] * int(k.max()), x.shape[1], int(k.max())))
        return kmeans(x, real, k, iters, seed)

    monkeypatch.setattr(subclusters, "batched_kmeans", recording)
    split = split_leaves(vectors_for(tree, 0), tree, 2, max_clusters=4, max_elements=200)
    assert runs and all(k <= 4 and width <= 8 for _, width, k in runs)  # parts of at most 4 x 2 items
    assert all(elements <= 200 for elements, _, _ in runs)  # chunks of the distance array
    assert int(split.size.sum()) == 400 and int(split.size.max()) <= 8


def test_kmeans_separates_well_apart_groups():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(20, 3, generator=g) * 0.1 + 5, torch.randn(20, 3, generator=g) * 0.1 - 5])
    pad = torch.zeros(1, 45, 3)
    pad[0, :40] = x
    real = torch.arange(45)[None] < 40
    label = batched_kmeans(torch.cat([pad, pad]), torch.cat([real, real]), torch.tensor([2, 1]))
    first = label[0]
    assert len(set(first[:20].tolist())) == 1 and len(set(first[20:40].tolist())) == 1 and first[0] != first[20]
    assert bool((label[:, 40:] == -1).all()) and bool((label[1, :40] == 0).all())  # padding; one cluster


def test_a_budget_is_a_fraction_of_the_library_or_a_number_of_items():
    assert [budget_items(v, 1000) for v in (0.1, 1.0, 1, 0.0001, 250, 250.0, 5000)] == [
        100,
        1000,
        1000,
        1,
        250,
        250,
        1000,
    ]
    assert subcluster_budgets(0.1, 0.3, 1000, 64) == (300, 100, 192)  # as many leaves per item of pool
    assert subcluster_budgets(100, 50, 1000, 64) == subcluster_budgets(0.1, None, 1000, 64) == (100, 100, 64)
    for ok in (0.5, 1, 1.0, 300, 300.0):
        assert check_item_budget("select_budget", ok) == ok
    for bad in (0, -0.1, 1.5, True, "0.1", None):
        with pytest.raises(ConfigError, match="select_budget must be a fraction of the library"):
            check_item_budget("select_budget", bad)


def test_group_logsumexp_matches_a_loop():
    x = torch.tensor([[0.0, 1.0, float("-inf"), 2.0], [3.0, float("-inf"), float("-inf"), 1.0]])
    group = torch.tensor([0, 0, 1, 2])
    out = group_logsumexp(x, group, 4)
    assert torch.allclose(out[0, 0], torch.logsumexp(torch.tensor([0.0, 1.0]), 0))
    assert out[0, 1] == float("-inf") and out[0, 3] == float("-inf")  # masked and empty groups
    assert torch.allclose(out[1], torch.tensor([3.0, float("-inf"), 1.0, float("-inf")]))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 1000), groups=st.integers(1, 6), columns=st.integers(1, 20))
def test_group_logsumexp_over_rows_is_the_transpose_of_over_columns(seed, groups, columns):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, columns, generator=g) * 5
    x[torch.rand(3, columns, generator=g) < 0.3] = float("-inf")
    group = torch.randint(0, groups, (columns,), generator=g)
    by_columns = group_logsumexp(x, group, groups)  # [3, G]
    assert torch.allclose(group_logsumexp(x.T.contiguous(), group, groups, dim=0), by_columns.T, equal_nan=True)
    for k in range(groups):  # and each is the plain logsumexp of its group
        assert torch.allclose(by_columns[:, k], torch.logsumexp(x[:, group == k], 1), atol=1e-6, equal_nan=True)


@settings(max_examples=40, deadline=None)
@given(tree=trees, seed=st.integers(0, 50), sub_size=st.integers(1, 6), density=st.floats(0.05, 0.9))
def test_pair_parts_lists_each_pairs_chosen_subclusters(tree, seed, sub_size, density):
    split = split_leaves(vectors_for(tree, seed), tree, sub_size)
    N = tree.num_nodes
    g = torch.Generator().manual_seed(seed)
    chosen = torch.rand(3, len(split.size), generator=g) < density  # [B, C] any choice
    b, c = chosen.nonzero(as_tuple=True)
    selected = torch.zeros(3, N, dtype=torch.bool)
    selected[b, split.leaf[c]] = True
    user, node = selected.nonzero(as_tuple=True)
    parts = pair_parts(b, c, user, node, split.leaf, N)
    assert parts.shape[0] == len(user)
    for m in range(len(user)):
        mine = (chosen[user[m]] & (split.leaf == node[m])).nonzero().squeeze(1) + N
        got = parts[m][parts[m] >= 0]
        assert sorted(got.tolist()) == mine.tolist() and bool((parts[m, len(got) :] == -1).all())


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("order", LEAF_ORDERS)
@settings(max_examples=40, deadline=None)
@given(
    tree=trees,
    seed=st.integers(0, 50),
    sub_size=st.integers(1, 12),
    budget_frac=st.floats(0.02, 0.6),
    w=st.sampled_from([0.0, 0.3, 1.0]),
)
def test_subclusters_lie_in_the_pooled_leaves_within_the_budget_by_their_mass(
    order, compact, tree, seed, sub_size, budget_frac, w
):
    n = int(tree.size[0])
    budget = max(1, int(budget_frac * n))
    pool = min(n, 2 * budget)
    g = torch.Generator().manual_seed(seed)
    split = split_leaves(vectors_for(tree, seed), tree, sub_size)
    lp = node_log_probs(torch.randn(3, tree.num_nodes, generator=g) * 2, tree)
    h = torch.randn(3, 5, generator=g)
    chosen = select_subclusters(lp, h, tree, split, pool, budget, 10**6, order, leaf_weight=w, compact=compact)
    pooled = select_leaves(lp, tree, pool, 10**6, order)
    assert chosen.shape == (3, len(split.size))
    for b in range(3):
        picked = chosen[b].nonzero().squeeze(1)
        assert len(picked) >= 1
        assert bool(pooled[b, split.leaf[picked]].all())  # only parts of stage 1's leaves
        assert int(split.size[picked].sum()) <= budget or len(picked) == 1  # the budget is an upper bound
    priority = torch.full((3, len(split.size)), float("-inf"))
    for leaf in split.leaf.unique().tolist():  # P(c | leaf, user): a softmax of h . centroid + log |c| in the leaf
        mine = (split.leaf == leaf).nonzero().squeeze(1)
        estimate = h @ split.centroid[mine].T + split.size[mine].float().log()
        share = torch.log_softmax(estimate, dim=1)
        leaf_mass = w * lp[:, leaf, None] + (1 - w) * torch.logsumexp(estimate, 1, keepdim=True)  # P^w Z^(1-w)
        mass = leaf_mass + share - (split.size[mine].float().log() if order == "density" else 0.0)
        priority[:, mine] = mass.masked_fill(~pooled[:, leaf, None], float("-inf"))
    assert torch.equal(chosen, sorted_prefix(priority, split.size, budget))  # taken in order of that mass


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("order", LEAF_ORDERS)
@settings(max_examples=40, deadline=None)
@given(tree=trees, seed=st.integers(0, 50), budget_frac=st.floats(0.02, 1.0), max_nodes=st.integers(1, 30))
def test_one_cluster_per_leaf_and_no_wider_pool_is_the_leaf_rule(order, compact, tree, seed, budget_frac, max_nodes):
    n = int(tree.size[0])
    budget = max(1, int(budget_frac * n))
    g = torch.Generator().manual_seed(seed)
    split = split_leaves(vectors_for(tree, seed), tree, n + 1)  # every leaf whole
    lp = node_log_probs(torch.randn(3, tree.num_nodes, generator=g) * 2, tree)
    h = torch.randn(3, 5, generator=g)
    chosen = select_subclusters(lp, h, tree, split, budget, budget, max_nodes, order, compact=compact)
    as_leaves = torch.zeros_like(lp, dtype=torch.bool)
    b, c = chosen.nonzero(as_tuple=True)
    as_leaves[b, split.leaf[c]] = True
    assert torch.equal(as_leaves, select_leaves(lp, tree, budget, max_nodes, order))


@pytest.mark.parametrize("backend", ["faiss", "exact"])
def test_a_search_over_parts_is_the_search_of_their_union(backend):
    from tests.test_generator_selection import random_tree

    tree = random_tree(150, 3, 20, 2, 1)
    vectors = vectors_for(tree, 3, dim=8)
    split = split_leaves(vectors, tree, 6)
    N = tree.num_nodes
    index = NodeIndex(vectors, split.perm, torch.cat([tree.lo, split.lo]), torch.cat([tree.hi, split.hi]), backend)
    rng = np.random.default_rng(0)
    queries, nodes, parts = [], [], []
    for leaf in tree.is_leaf.nonzero().squeeze(1).tolist():
        mine = (split.leaf == leaf).nonzero().squeeze(1).tolist()
        keep = sorted(rng.choice(mine, size=rng.integers(1, len(mine) + 1), replace=False).tolist())
        queries.append(torch.randn(8, generator=torch.Generator().manual_seed(leaf)))
        nodes.append(leaf)
        parts.append(keep)
    width = max(len(p) for p in parts)
    parts_t = torch.tensor([[c + N for c in p] + [-1] * (width - len(p)) for p in parts])
    q, k = torch.stack(queries), 5
    scores, ids, log_z = index.search_with_logsumexp(q, torch.tensor(nodes), k, parts_t)
    for m, p in enumerate(parts):
        items = torch.cat([split.perm[int(split.lo[c]) : int(split.hi[c])] for c in p])
        s = vectors[items] @ q[m]
        top = s.topk(min(k, len(items)))
        assert torch.allclose(scores[m, : len(top.values)], top.values, atol=1e-5)
        assert set(ids[m, : len(top.values)].tolist()) == set(items[top.indices].tolist())
        assert bool((ids[m, len(top.values) :] == -1).all())
        expected = torch.logsumexp(s if backend == "exact" else top.values, 0)  # exact, or over the top k
        assert torch.allclose(log_z[m], expected, atol=1e-4)


def sorted_prefix(priority: torch.Tensor, size: torch.Tensor, budget: int) -> torch.Tensor:
    """The rule of :func:`budget_prefix` by a full sort of every row (the reference)."""
    ranked = priority.argsort(dim=1, descending=True)
    pooled = torch.isfinite(priority.gather(1, ranked))
    take = (size[ranked].cumsum(1) <= budget) & pooled
    take[:, 0] = pooled[:, 0]
    return torch.zeros_like(take).scatter_(1, ranked, take)


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    columns=st.integers(1, 60),
    budget=st.integers(1, 200),
    masked=st.floats(0.0, 1.0),
    first_k=st.one_of(st.none(), st.integers(1, 8)),
)
def test_budget_prefix_is_the_sorted_prefix(seed, columns, budget, masked, first_k):
    g = torch.Generator().manual_seed(seed)
    priority = torch.randn(4, columns, generator=g)  # continuous: no ties
    priority[torch.rand(4, columns, generator=g) < masked] = float("-inf")
    size = torch.randint(1, 30, (columns,), generator=g)
    kept = budget_prefix(priority, size, budget, first_k)
    assert torch.equal(kept, sorted_prefix(priority, size, budget))
    assert torch.equal(budget_prefix(priority, size.expand(4, -1), budget, first_k), kept)  # sizes per row
    for b in range(4):  # the rule itself: finite only, within the budget unless a single column
        assert bool(torch.isfinite(priority[b, kept[b]]).all())
        assert int(size[kept[b]].sum()) <= budget or int(kept[b].sum()) == 1
