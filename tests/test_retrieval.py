"""Retrieval pieces on plain tensors: Faiss vs exact, merging, and the -inf rule for missed targets."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recbole_rimirec.retrieval import index as index_module
from recbole_rimirec.retrieval.index import NodeIndex
from recbole_rimirec.retrieval.merge import dense_scores, group_by_user, merge_topk
from recbole_rimirec.tree.itemtree import build_tree


@pytest.mark.parametrize(
    "blas_work, blas_block",  # every node by BLAS (in one block, or in blocks of 64 scores), a mix, every node by IVF
    [(0, 1 << 24), (0, 64), (200, 1 << 24), (1 << 40, 1 << 24)],
)
def test_faiss_and_exact_give_the_same_top_n(blas_work, blas_block, monkeypatch):
    monkeypatch.setattr(index_module, "BLAS_WORK", blas_work)
    monkeypatch.setattr(index_module, "BLAS_BLOCK", blas_block)
    rng = np.random.default_rng(0)
    n_items, d = 500, 16
    tree = build_tree(rng.standard_normal((n_items, d)).astype(np.float32), 6, 30, 3, seed=0)
    vectors = torch.from_numpy(rng.standard_normal((n_items, d)).astype(np.float32))
    queries = torch.from_numpy(rng.standard_normal((300, d)).astype(np.float32))
    nodes = torch.from_numpy(rng.integers(0, tree.num_nodes, 300))
    faiss_idx = NodeIndex(vectors, tree.perm, tree.node_lo, tree.node_hi, "faiss")
    exact_idx = NodeIndex(vectors, tree.perm, tree.node_lo, tree.node_hi, "exact")
    fs, fi = faiss_idx.search(queries, nodes, 20)
    es, ei = exact_idx.search(queries, nodes, 20)
    assert torch.allclose(fs, es, atol=1e-4)
    assert (fi == ei).float().mean() > 0.999  # identical lists up to exact ties
    pos = torch.from_numpy(tree.pos)
    lo, hi = torch.from_numpy(tree.node_lo)[nodes], torch.from_numpy(tree.node_hi)[nodes]
    found = fi >= 0
    inside = (pos[fi.clamp(min=0)] >= lo[:, None]) & (pos[fi.clamp(min=0)] < hi[:, None])
    assert inside[found].all()  # every result lies in its node's sub-library
    short = (hi - lo) < 20
    assert (~found[short]).any() and torch.isinf(fs[~found]).all()  # small nodes: -1 / -inf, never Faiss's -3.4e38


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 9),
    n=st.integers(1, 60),
    k=st.integers(1, 12),
    block=st.integers(1, 200),
    seed=st.integers(0, 10_000),
)
def test_blocked_top_k_is_the_full_top_k(m, n, k, block, seed):
    gen = torch.Generator().manual_seed(seed)
    queries, vectors = torch.randn(m, 5, generator=gen), torch.randn(n, 5, generator=gen)
    values, indices = index_module.blocked_topk(queries, vectors, k, block=block)
    full = (queries @ vectors.T).topk(min(k, n), dim=1)
    assert values.shape == indices.shape == (m, min(k, n))
    assert torch.allclose(values, full.values, atol=1e-5)  # best first, the same scores
    scored = (queries[:, None, :] * vectors[indices]).sum(-1)  # each index's own score
    assert torch.allclose(scored, values, atol=1e-5)
    assert all(len(set(row.tolist())) == row.numel() for row in indices)  # no item twice


def node_case(seed: int, n_queries: int = 200):
    """A random tree over 400 items, item vectors, queries and their nodes, and each query's brute log Z.

    Returns:
        (tree, vectors, queries, nodes, small, log_z): ``small`` [Q] marks nodes of at most 20 items (k below);
        ``log_z(q)`` is [Q] the exact log-sum-exp of ``q``'s rows over their nodes.
    """
    rng = np.random.default_rng(seed)
    n_items, d = 400, 8
    tree = build_tree(rng.standard_normal((n_items, d)).astype(np.float32), 5, 30, 3, seed=0)
    vectors = torch.from_numpy(rng.standard_normal((n_items, d)).astype(np.float32))
    queries = torch.from_numpy(rng.standard_normal((n_queries, d)).astype(np.float32))
    nodes = torch.from_numpy(rng.integers(0, tree.num_nodes, n_queries))
    lo, hi = torch.from_numpy(tree.node_lo)[nodes], torch.from_numpy(tree.node_hi)[nodes]
    perm = torch.from_numpy(tree.perm)

    def log_z(q):
        return torch.stack([torch.logsumexp(vectors[perm[a:b]] @ x, 0) for x, a, b in zip(q, lo, hi, strict=True)])

    small = (hi - lo) <= 20
    assert small.any() and (~small).any()
    return tree, vectors, queries, nodes, small, log_z


def test_log_sum_exp_is_exact_over_the_node_or_the_top_k():
    tree, vectors, queries, nodes, small, log_z = node_case(1)
    brute = log_z(queries)
    es, _, e_z = NodeIndex(vectors, tree.perm, tree.node_lo, tree.node_hi, "exact").search_with_logsumexp(
        queries, nodes, 20
    )
    fs, _, f_z = NodeIndex(vectors, tree.perm, tree.node_lo, tree.node_hi, "faiss").search_with_logsumexp(
        queries, nodes, 20
    )
    assert torch.allclose(e_z, brute, atol=1e-4)  # exact: every item of the node
    assert torch.allclose(f_z, torch.logsumexp(fs, 1)) and (f_z <= brute + 1e-4).all()  # Faiss: its top k
    assert torch.allclose(f_z[small], brute[small], atol=1e-4)


def test_log_sum_exp_of_other_vectors_comes_from_the_same_search():
    """z_queries: the ranking stays the queries', log Z is the other vectors' over the node (or their top k)."""
    tree, vectors, queries, nodes, small, log_z = node_case(2)
    other = torch.from_numpy(np.random.default_rng(3).standard_normal(queries.shape).astype(np.float32))
    brute = log_z(other)
    for backend in ("exact", "faiss"):
        index = NodeIndex(vectors, tree.perm, tree.node_lo, tree.node_hi, backend)
        s, ids, z = index.search_with_logsumexp(queries, nodes, 20, z_queries=other)
        plain_s, plain_ids = index.search(queries, nodes, 20)
        assert torch.equal(ids, plain_ids) and torch.equal(s, plain_s)  # the ranking is untouched
        if backend == "exact":
            assert torch.allclose(z, brute, atol=1e-4)
        else:  # the other vectors' own top k
            assert torch.allclose(z, torch.logsumexp(index.search(other, nodes, 20)[0], 1), atol=1e-4)
            assert torch.allclose(z[small], brute[small], atol=1e-4)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 1000), k=st.integers(1, 15))
def test_merge_keeps_each_item_once_with_its_best_score(seed, k):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(3, 30, generator=g)
    ids = torch.randint(1, 12, (3, 30), generator=g)
    top_s, top_i = merge_topk(scores, ids, k)
    for b in range(3):
        best = {}
        for s, i in zip(scores[b].tolist(), ids[b].tolist(), strict=True):
            best[i] = max(best.get(i, -1e9), s)
        expect = sorted(best.items(), key=lambda kv: -kv[1])[:k]
        got = [(i, s) for i, s in zip(top_i[b].tolist(), top_s[b].tolist(), strict=True) if i >= 0]
        assert [i for i, _ in got] == [i for i, _ in expect]  # random scores: no ties between items
        assert np.allclose([s for _, s in got], [s for _, s in expect])
        assert len(set(i for i, _ in got)) == len(got)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 1000), k=st.integers(1, 40), empty=st.floats(0.0, 0.9))
def test_merge_of_disjoint_lists_needs_no_duplicate_search(seed, k, empty):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(3, 30, generator=g)
    ids = torch.stack([torch.randperm(100, generator=g)[:30] + 1 for _ in range(3)])  # distinct per row
    hole = torch.rand(3, 30, generator=g) < empty  # empty slots, as a search short of k leaves them
    scores, ids = scores.masked_fill(hole, float("-inf")), ids.masked_fill(hole, -1)
    fast_s, fast_i = merge_topk(scores, ids, k, distinct=True)
    slow_s, slow_i = merge_topk(scores, ids, k)
    assert torch.equal(fast_s, slow_s) and torch.equal(fast_i, slow_i)


def test_group_by_user_lays_out_lists():
    user = torch.tensor([1, 0, 1, 1])
    s = torch.arange(8.0).view(4, 2)
    ids = torch.arange(8).view(4, 2)
    gs, gi = group_by_user(user, s, ids, 3)
    assert gs.shape == (3, 6)
    assert gi[0].tolist()[:2] == [2, 3] and gi[1].tolist() == [0, 1, 4, 5, 6, 7]
    assert (gi[2] == -1).all() and torch.isinf(gs[2]).all()


def test_missed_target_never_counts_as_a_hit():
    # One user retrieved only 3 items; RecBole's Collector takes topk(10) of the dense scores.
    top_s = torch.tensor([[3.0, 2.0, 1.0, float("-inf")]])
    top_i = torch.tensor([[5, 6, 7, -1]])
    scores = dense_scores(top_s, top_i, 50, torch.tensor([0]), torch.tensor([9]))
    topk = scores.topk(10, dim=1).indices[0].tolist()
    assert topk[:3] == [5, 6, 7] and 9 not in topk and 0 not in topk
    assert scores[0, 9] == float("-inf") and scores[0, 8] == -1e30
    hit = dense_scores(top_s, top_i, 50, torch.tensor([0]), torch.tensor([6]))
    assert 6 in hit.topk(10, dim=1).indices[0].tolist()
