"""Choosing the tree nodes ("circles" and "sub-circles") a user's retrieval searches.

Best-first frontier with early stopping: start from the root; repeatedly take the frontier
node with the most probability mass P(node | user); if its items fit in what is left of the
library budget, emit it as it is, at whatever level it sits; otherwise replace it by its
children (a leaf that does not fit is dropped; a user's first node is always emitted). Stop
when the frontier is empty, the budget is covered or ``max_nodes`` are emitted. The budget is
an upper bound: only a user whose single most likely leaf exceeds it scores more.
Emitted nodes are disjoint (never nested) and every one is a real node of the tree.

Leaves first (:func:`select_leaves`), the alternative: only leaves are emitted, in order of
P(leaf | user) (``leaves``) or of mass per item, P(leaf | user) / |leaf| (``density``), each one
that fits in what is left of the budget. A parent's mass is never below its child's, so the
frontier can spend a tenth of a library on three large circles; leaves first spends it on the
sub-circles that hold the mass. With the whole library as the budget and no node limit, it emits
every leaf: the model's own factorised score over the whole library, the ceiling of any selection.

Sub-clusters (:func:`subcluster_pairs`): the generator's leaves over a wider pool, cut by the model's own
item vectors into compact parts, the parts the user's state points at kept under the budget.

Plain functions on tensors, batched over users.
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pad_sequence

from recbole_rimirec.tree.tensors import TreeTensors


def select_frontier(log_probs: torch.Tensor, tree: TreeTensors, budget_items: int, max_nodes: int) -> torch.Tensor:
    """Best-first selection of disjoint nodes under a library budget.

    Args:
        log_probs: [B, N] log P(node | user).
        tree: the tree's tensors.
        budget_items: the most items the selected nodes cover (one node larger than the budget
            is emitted only as a user's first node).
        max_nodes: the most nodes per user.

    Returns:
        torch.Tensor: [B, N] bool, the selected nodes.
    """
    B, N = log_probs.shape
    device = log_probs.device
    node_ids = torch.arange(N, device=device)
    frontier = torch.zeros(B, N, dtype=torch.bool, device=device)
    frontier[:, 0] = True
    selected = torch.zeros_like(frontier)
    used = torch.zeros(B, dtype=torch.long, device=device)
    count = torch.zeros(B, dtype=torch.long, device=device)
    active = torch.ones(B, dtype=torch.bool, device=device)
    while True:
        active &= frontier.any(1) & (used < budget_items) & (count < max_nodes)
        rows = active.nonzero().squeeze(1)
        if len(rows) == 0:
            return selected
        best = log_probs[rows].masked_fill(~frontier[rows], float("-inf")).argmax(1)  # [R]
        frontier[rows, best] = False
        leaf = tree.is_leaf[best]
        take = (tree.size[best] <= budget_items - used[rows]) | (leaf & (count[rows] == 0))
        took, node = rows[take], best[take]
        selected[took, node] = True
        used[took] += tree.size[node]
        count[took] += 1
        expand = ~take & ~leaf  # a leaf that does not fit is dropped
        grow, parent = rows[expand], best[expand]
        kids = (node_ids[None, :] >= tree.child_lo[parent][:, None]) & (
            node_ids[None, :] < tree.child_hi[parent][:, None]
        )
        frontier[grow] |= kids


def select_beam(log_probs: torch.Tensor, tree: TreeTensors, beam_size: int) -> torch.Tensor:
    """Level-by-level beam search constrained to the tree, with an implicit end token.

    The beam starts at the root's children; at each level every internal node in the beam is
    replaced by its children, a leaf stays as a finished path (its end token), and the
    ``beam_size`` best entries by P(node | user) are kept. The alternative to
    :func:`select_frontier`, kept behind ``select_method: beam`` for measurement.

    Args:
        log_probs: [B, N] log P(node | user).
        tree: the tree's tensors.
        beam_size: nodes kept per user (>= 1).

    Returns:
        torch.Tensor: [B, N] bool, disjoint selected nodes (at most ``beam_size`` per user).
    """
    B, N = log_probs.shape
    device = log_probs.device
    beam = torch.zeros(B, N, dtype=torch.bool, device=device)
    beam[:, 0] = True
    node_ids = torch.arange(N, device=device)
    parent = tree.parent.clamp(min=0)
    for _ in range(tree.max_depth):
        expand = beam & ~tree.is_leaf[None, :]  # [B, N] internal nodes to replace by children
        if not expand.any():
            break
        children = expand[:, parent] & (node_ids != 0)[None, :]  # a node whose parent is expanded
        candidates = (beam & ~expand) | children
        scores = log_probs.masked_fill(~candidates, float("-inf"))
        k = min(beam_size, N)
        top = scores.topk(k, dim=1)
        beam = torch.zeros_like(beam)
        beam.scatter_(1, top.indices, torch.isfinite(top.values))
    return beam


LEAF_ORDERS = ("leaves", "density")
COMPACT_POOL_SHARE = 0.1  # subcluster_pairs' stage 2 runs compact at most at this pool share of the library


def budget_items(value: float, n_items: int) -> int:
    """Items a budget stands for: a fraction of the library (at most 1) or a number of items (above 1).

    Args:
        value: ``select_budget`` or ``subcluster_pool``.
        n_items: the library's size.

    Returns:
        int: at least 1.
    """
    return max(1, round(value * n_items) if value <= 1 else min(int(value), n_items))


def subcluster_budgets(budget: float, pool: float | None, n_items: int, max_nodes: int) -> tuple[int, int, int]:
    """The item counts :func:`subcluster_pairs` takes from ``select_budget`` and ``subcluster_pool``.

    Args:
        budget: ``select_budget`` (a fraction or items, :func:`budget_items`).
        pool: ``subcluster_pool``, or ``None``/0 for no wider pool.
        n_items: the library's size.
        max_nodes: ``select_max_nodes``.

    Returns:
        (pool_items, budget_items, pool_max_nodes): a pool below the budget is the budget, and the pool
        may hold as many leaves per item as the budget's ``max_nodes``.
    """
    budget_n = budget_items(budget, n_items)
    pool_n = max(budget_n, budget_items(pool, n_items)) if pool else budget_n
    return pool_n, budget_n, max(max_nodes, round(max_nodes * pool_n / budget_n))


def select_leaves(
    log_probs: torch.Tensor, tree: TreeTensors, budget_items: int, max_nodes: int, order: str = "leaves"
) -> torch.Tensor:
    """Greedy selection of leaves under a library budget.

    Args:
        log_probs: [B, N] log P(node | user).
        tree: the tree's tensors.
        budget_items: the most items the selected leaves cover (one leaf larger than the budget is
            emitted only as a user's first node).
        max_nodes: the most leaves per user.
        order: ``leaves`` (the most mass first) or ``density`` (the most mass per item first).

    Returns:
        torch.Tensor: [B, N] bool, the selected leaves.
    """
    if order not in LEAF_ORDERS:
        raise ValueError(f"order must be one of {LEAF_ORDERS}, not {order!r}")
    B = log_probs.shape[0]
    leaves = tree.is_leaf.nonzero().squeeze(1)  # [F]
    priority = log_probs[:, leaves]  # [B, F]
    if order == "density":
        priority = priority - tree.size[leaves].clamp(min=1).float().log()[None, :]
    ranked = leaves[priority.argsort(dim=1, descending=True)]  # [B, F] leaf ids, best first
    selected = torch.zeros_like(log_probs, dtype=torch.bool)
    used = torch.zeros(B, dtype=torch.long, device=log_probs.device)
    count = torch.zeros_like(used)
    rows = torch.arange(B, device=log_probs.device)
    for r in range(ranked.shape[1]):
        open_ = (used < budget_items) & (count < max_nodes)
        if not open_.any():
            break
        leaf = ranked[:, r]  # [B]
        size = tree.size[leaf]
        take = open_ & ((size <= budget_items - used) | (count == 0))
        selected[rows[take], leaf[take]] = True
        used += size * take
        count += take.long()
    return selected


def group_logsumexp(x: torch.Tensor, group: torch.Tensor, n_groups: int, dim: int = 1) -> torch.Tensor:
    """logsumexp of the entries of ``x`` grouped by ``group`` along one dimension.

    Args:
        x: [B, M] values (``-inf`` allowed), or [M, B] with ``dim=0`` (the faster layout on a CPU:
            each group's reduction adds whole rows).
        group: [M] group id of each entry along ``dim``, in ``0..n_groups-1``.
        n_groups: G.
        dim: the grouped dimension, 1 or 0.

    Returns:
        torch.Tensor: [B, G], or [G, B] with ``dim=0`` (``-inf`` for a group with no finite value).
    """
    view = [1, 1]
    view[dim] = -1
    index = group.view(view).expand_as(x)  # [B, M] or [M, B]
    shape = list(x.shape)
    shape[dim] = n_groups
    peak = x.new_full(shape, float("-inf")).scatter_reduce(dim, index, x, reduce="amax")
    safe = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    sums = x.new_zeros(shape).scatter_add_(dim, index, (x - safe.index_select(dim, group)).exp())
    return safe + sums.log()


def select_subclusters(log_probs: torch.Tensor, h: torch.Tensor, tree: TreeTensors, split, *args, **kwargs):
    """:func:`subcluster_pairs` (same arguments) as a mask.

    Returns:
        torch.Tensor: [B, C] bool, the chosen sub-clusters.
    """
    b, c = subcluster_pairs(log_probs, h, tree, split, *args, **kwargs)
    chosen = torch.zeros(len(log_probs), len(split.size), dtype=torch.bool, device=log_probs.device)
    chosen[b, c] = True
    return chosen


def subcluster_pairs(
    log_probs: torch.Tensor,
    h: torch.Tensor,
    tree: TreeTensors,
    split,
    pool_items: int,
    budget_items: int,
    pool_max_nodes: int,
    order: str = "density",
    leaf_weight: float = 1.0,
    compact: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two stages: the generator's leaves over a wider pool, then their best sub-clusters under the budget.

    Stage 1 is :func:`select_leaves` with ``pool_items``. Stage 2 gives each sub-cluster ``c`` of a
    pooled leaf the mass ``P(leaf | user) * P(c | leaf, user)``, where ``P(c | leaf, user)`` is a
    softmax over the leaf's sub-clusters of ``h . centroid_c + log |c|`` (the centroid estimate of
    the global head's mass, sound because sub-clusters are compact in the item vectors' space), and
    takes sub-clusters in order of that mass (``leaves``) or mass per item (``density``) while the
    running total fits ``budget_items`` (a user's first sub-cluster is always taken).

    ``leaf_weight`` w < 1 takes the leaf's mass as ``P(leaf | user)^w * Z(leaf)^(1 - w)``, where
    ``Z(leaf)`` is the centroid estimate of the global head's mass of the leaf (the sum over its
    sub-clusters); at 0 the pooled sub-clusters are ordered by the centroid estimate alone.

    With one sub-cluster per leaf and ``pool_items == budget_items`` it selects what
    :func:`select_leaves` does.

    Args:
        log_probs: [B, N] log P(node | user).
        h: [B, H] user states (the global head's query).
        tree: the tree's tensors.
        split: a :class:`~recbole_rimirec.tree.subclusters.LeafSplit`.
        pool_items: the most items stage 1's leaves cover.
        budget_items: the most items the chosen sub-clusters cover.
        pool_max_nodes: the most leaves of stage 1.
        order: ``leaves`` or ``density``.
        leaf_weight: w, the generator's share of each leaf's mass (1: the generator's alone).
        compact: stage 2 over the pooled sub-clusters only (its cost follows the pool) or over every
            sub-cluster in dense [C, B] arrays (fewer, cheaper operations per entry); ``None``: compact
            when the pool is at most ``COMPACT_POOL_SHARE`` of the library. The same choice either way.

    Returns:
        (user, sub-cluster): [Q] each the chosen pairs (no [B, C] mask, which grows with the library).
    """
    leaves = select_leaves(log_probs, tree, pool_items, pool_max_nodes, order)  # [B, N]
    if compact is None:
        compact = pool_items <= COMPACT_POOL_SHARE * int(tree.size[0])
    if compact:
        return _pooled_subclusters(log_probs, h, leaves, split, budget_items, order, leaf_weight)
    log_size = split.size.clamp(min=1).float().log()  # [C]
    # [C, B] layout: each leaf's sums add whole rows of users, cheaper on a CPU than scattering inside [B, C] rows
    score = split.centroid @ h.float().T  # [C, B]
    estimate = score + log_size[:, None]  # [C, B]
    log_z = group_logsumexp(estimate, split.leaf, tree.num_nodes, dim=0)  # [N, B] per leaf
    # log P(leaf) + log P(c | leaf) = (log P(leaf) - log_z[leaf]) + estimate, and density takes
    # log |c| off again: one [N, B] term per leaf, gathered once over the sub-clusters
    # w log P(leaf) + (1 - w) log Z(leaf) + log P(c | leaf) = w (log P(leaf) - log_z[leaf]) + estimate
    per_leaf = (leaf_weight * (log_probs.T - log_z)).masked_fill(~leaves.T, float("-inf"))  # [N, B]
    priority = per_leaf.index_select(0, split.leaf) + (score if order == "density" else estimate)  # [C, B]
    return budget_prefix(priority.T.contiguous(), split.size, budget_items).nonzero(as_tuple=True)


def _pooled_subclusters(log_probs, h, leaves, split, budget_items: int, order: str, leaf_weight: float):
    """Stage 2 of :func:`subcluster_pairs` over the pooled leaves' sub-clusters, one flat entry each."""
    B, C = len(log_probs), len(split.size)
    device = log_probs.device
    user, leaf = leaves.nonzero(as_tuple=True)  # [L] pooled (user, leaf) pairs, row-major
    count = torch.bincount(split.leaf, minlength=leaves.shape[1])  # [N] sub-clusters per leaf (consecutive)
    first = torch.full_like(count, C).scatter_reduce(0, split.leaf, torch.arange(C, device=device), "amin")  # [N]
    n_c = count[leaf]  # [L]
    start = n_c.cumsum(0) - n_c  # [L] each pair's first entry
    pair = torch.repeat_interleave(torch.arange(len(leaf), device=device), n_c)  # [T] each entry's pair
    col = (first[leaf] - start)[pair] + torch.arange(len(pair), device=device)  # [T] sub-cluster
    row = user[pair]  # [T]
    score = _pair_scores(h.float(), split.centroid, user, leaf, first, n_c, start)  # [T] h . centroid
    estimate = score + split.size[col].clamp(min=1).float().log()  # [T]
    log_z = group_logsumexp(estimate[None, :], pair, len(leaf))[0]  # [L] per pooled leaf
    per_leaf = leaf_weight * (log_probs[user, leaf] - log_z)  # [L], as in the dense stage
    flat = per_leaf[pair] + (score if order == "density" else estimate)  # [T]
    # each user's entries are consecutive (pairs are row-major): pad them into rows, [B, P]
    per_user = torch.zeros(B, dtype=torch.long, device=device).index_add_(0, user, n_c).tolist()
    priority = pad_sequence(flat.split(per_user), batch_first=True, padding_value=float("-inf"))  # [B, P]
    size = pad_sequence(split.size[col].split(per_user), batch_first=True, padding_value=1)  # [B, P]
    real = torch.arange(priority.shape[1], device=device)[None, :] < torch.tensor(per_user, device=device)[:, None]
    kept = budget_prefix(priority, size, budget_items)[real]  # [T], in entry order
    return row[kept], col[kept]


def _pair_scores(h, centroid, user, leaf, first, n_c, start) -> torch.Tensor:
    """[T] h_user . centroid_c for every pooled (user, leaf) pair's sub-clusters, in pair order.

    One matrix product per pooled leaf ([its sub-clusters, its users]), so no [T, H] gather is held.
    """
    out = h.new_empty(int(n_c.sum()))
    order = torch.argsort(leaf, stable=True)  # pairs grouped by leaf
    leaves, per_leaf = torch.unique_consecutive(leaf[order], return_counts=True)
    bounds = [0] + per_leaf.cumsum(0).tolist()
    for node, a, b in zip(leaves.tolist(), bounds[:-1], bounds[1:], strict=True):
        pairs = order[a:b]  # [m]
        lo, c = int(first[node]), int(n_c[pairs[0]])
        block = centroid[lo : lo + c] @ h[user[pairs]].T  # [c, m]
        at = start[pairs][None, :] + torch.arange(c, device=h.device)[:, None]  # [c, m]
        out[at.reshape(-1)] = block.reshape(-1)
    return out


def budget_prefix(priority: torch.Tensor, size: torch.Tensor, budget: int, first_k: int | None = None) -> torch.Tensor:
    """Each row's columns in descending priority while their running size fits the budget.

    A row always keeps its best finite column, whatever its size; ``-inf`` columns are never kept.
    The order comes from ``topk`` over a few more columns than the budget can hold, doubled until
    every row's prefix ends inside it, so the cost follows the budget rather than the number of
    columns (a full sort of 62k sub-clusters per user took 2 ms at a million items).

    Args:
        priority: [B, C] priorities (``-inf``: not a candidate).
        size: [C] items in each column, or [B, C] per row (at least 1).
        budget: the most items a row keeps (an upper bound, except for its first column).
        first_k: the first ``topk`` width; by default twice what the budget holds at the mean size.

    Returns:
        torch.Tensor: [B, C] bool, the kept columns.
    """
    C = priority.size(1)
    if C == 0:
        return torch.zeros_like(priority, dtype=torch.bool)
    mean_size = float(size.float().mean())
    k = min(C, first_k or int(2 * budget / max(mean_size, 1.0)) + 1)
    while True:
        top, ranked = priority.topk(k, dim=1)  # [B, k] best first
        pooled = torch.isfinite(top)
        sizes = size.gather(1, ranked) if size.dim() == 2 else size[ranked]  # [B, k]
        take = (sizes.cumsum(1) <= budget) & pooled
        take[:, 0] = pooled[:, 0]  # a row's first column, whatever its size
        # take is a prefix of each row: once its last column is out, no later column can be in
        if k == C or not bool(take[:, -1].any()):
            return torch.zeros_like(priority, dtype=torch.bool).scatter_(1, ranked, take)
        k = min(C, 2 * k)


def pair_parts(
    b: torch.Tensor, c: torch.Tensor, user: torch.Tensor, node: torch.Tensor, leaf_of: torch.Tensor, num_nodes: int
) -> torch.Tensor:
    """The chosen sub-clusters of each searched (user, leaf) pair, as the index's node ids.

    Args:
        b, c: [Q] the chosen (user, sub-cluster) pairs.
        user, node: [M] the searched (user, leaf) pairs, sorted by ``user * num_nodes + node``
            (as ``nonzero`` gives them).
        leaf_of: [C] the leaf holding each sub-cluster.
        num_nodes: N; sub-cluster ``c`` is node ``N + c`` of the index.

    Returns:
        torch.Tensor: [M, P] each pair's sub-clusters as index node ids, ``-1`` padding.
    """
    pair_key = user * num_nodes + node  # [M] sorted
    key = b * num_nodes + leaf_of[c]  # [Q]
    order = torch.argsort(key, stable=True)
    key, c = key[order], c[order]
    pair = torch.searchsorted(pair_key, key)  # [Q] each chosen sub-cluster's pair
    counts = torch.bincount(pair, minlength=len(pair_key))  # [M]
    slot = torch.arange(len(key), device=key.device) - (counts.cumsum(0) - counts)[pair]
    parts = torch.full((len(pair_key), int(counts.max()) if len(counts) else 1), -1, device=key.device)
    parts[pair, slot] = c + num_nodes
    return parts
