"""Choosing the tree nodes ("circles" and "sub-circles") a user's retrieval searches.

Best-first frontier with early stopping: start from the root; repeatedly take the frontier
node with the most probability mass P(node | user); if its items fit in what is left of the
library budget (or it is a leaf), emit it as it is, at whatever level it sits; otherwise replace
it by its children. Stop when the emitted nodes cover the budget or reach ``max_nodes``.
Emitted nodes are disjoint (never nested) and every one is a real node of the tree.
Plain functions on tensors, batched over users.
"""

from __future__ import annotations

import torch

from recbole_rimirec.tree.tensors import TreeTensors


def select_frontier(log_probs: torch.Tensor, tree: TreeTensors, budget_items: int, max_nodes: int) -> torch.Tensor:
    """Best-first selection of disjoint nodes under a library budget.

    Args:
        log_probs: [B, N] log P(node | user).
        tree: the tree's tensors.
        budget_items: items the selected nodes may cover; a leaf is still taken while the user is
            under budget, so the cover can exceed it by less than one leaf.
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
        take = (tree.size[best] <= budget_items - used[rows]) | tree.is_leaf[best]
        took, node = rows[take], best[take]
        selected[took, node] = True
        used[took] += tree.size[node]
        count[took] += 1
        grow, parent = rows[~take], best[~take]
        kids = (node_ids[None, :] >= tree.child_lo[parent][:, None]) & (
            node_ids[None, :] < tree.child_hi[parent][:, None]
        )
        frontier[grow] |= kids
