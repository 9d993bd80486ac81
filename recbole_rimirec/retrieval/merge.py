"""Merging candidate lists from several interests or tree nodes into one top-N list.

Plain functions on tensors, usable without a RecBole run.
"""

from __future__ import annotations

import torch


def merge_topk(
    scores: torch.Tensor, ids: torch.Tensor, k: int, distinct: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merges per-source candidate lists by score, keeping each item's best score once.

    Args:
        scores: [B, M] candidate scores (``-inf`` marks an empty slot).
        ids: [B, M] candidate item ids (an item may appear under several sources).
        k: list length N.
        distinct: the caller guarantees that no item appears twice in a row among finite scores (the
            sources are disjoint, as RimiRec's selected nodes are): one ``topk``, no sort to find duplicates.

    Returns:
        (top_scores, top_ids): [B, k] best first; slots past the distinct candidates hold
        ``-inf`` and id -1.
    """
    if distinct:
        s, i = scores, ids
    else:
        order = scores.argsort(dim=1, descending=True)  # [B, M]
        s, i = scores.gather(1, order), ids.gather(1, order)
        # After sorting by score, an item's first occurrence is its best; later ones are duplicates.
        sorted_ids, pos = i.sort(dim=1, stable=True)  # [B, M] grouped by id, score order inside
        first = torch.ones_like(sorted_ids, dtype=torch.bool)
        first[:, 1:] = sorted_ids[:, 1:] != sorted_ids[:, :-1]
        dup = torch.zeros_like(first)
        dup.scatter_(1, pos, ~first)
        s = s.masked_fill(dup, float("-inf"))
    kk = min(k, s.size(1))
    top_s, top_pos = s.topk(kk, dim=1)
    top_i = i.gather(1, top_pos).masked_fill(torch.isinf(top_s) & (top_s < 0), -1)
    if kk < k:
        pad = (top_s.size(0), k - kk)
        top_s = torch.cat([top_s, top_s.new_full(pad, float("-inf"))], 1)
        top_i = torch.cat([top_i, top_i.new_full(pad, -1)], 1)
    return top_s, top_i


def per_source_topk(source_scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of each source (interest) over the whole library, flattened for :func:`merge_topk`.

    Args:
        source_scores: [B, K, n_items] scores of every item under each source.
        k: per-source list length.

    Returns:
        (scores, ids): [B, K * k].
    """
    s, i = source_scores.topk(min(k, source_scores.size(-1)), dim=-1)  # [B, K, k]
    return s.flatten(1), i.flatten(1)


def group_by_user(
    user: torch.Tensor, scores: torch.Tensor, ids: torch.Tensor, num_users: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lays out per-(user, node) candidate lists as one padded row per user.

    Args:
        user: [M] user row of each list (any order).
        scores: [M, k] candidate scores.
        ids: [M, k] candidate ids.
        num_users: B.

    Returns:
        (scores, ids): [B, max_lists * k], ``-inf`` / -1 where a user has fewer lists.
    """
    M, k = scores.shape
    counts = torch.bincount(user, minlength=num_users)
    width = int(counts.max()) if M else 0
    order = torch.argsort(user, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(M, device=user.device) - starts[user[order]]
    out_s = scores.new_full((num_users, max(width, 1), k), float("-inf"))
    out_i = ids.new_full((num_users, max(width, 1), k), -1)
    out_s[user[order], rank] = scores[order]
    out_i[user[order], rank] = ids[order]
    return out_s.flatten(1), out_i.flatten(1)


def dense_scores(
    top_scores: torch.Tensor,
    top_ids: torch.Tensor,
    n_items: int,
    positive_u: torch.Tensor | None = None,
    positive_i: torch.Tensor | None = None,
    floor: float = -1e30,
) -> torch.Tensor:
    """Turns retrieved lists into the dense [B, n_items] scores RecBole's Collector ranks.

    Unretrieved items get a very low finite score; an unretrieved target gets ``-inf``, so that
    ``topk`` (which fills short lists with arbitrary items) never counts a missed target as a hit.
    Padding (item 0) is ``-inf``.

    Args:
        top_scores: [B, k] retrieved scores (``-inf`` for empty slots).
        top_ids: [B, k] retrieved ids (-1 for empty slots).
        n_items: the item id space size.
        positive_u: [P] rows of the targets.
        positive_i: [P] target item ids.
        floor: the score of unretrieved non-target items.

    Returns:
        torch.Tensor: [B, n_items].
    """
    B = len(top_scores)
    out = top_scores.new_full((B, n_items), floor)
    if positive_u is not None and len(positive_u):
        out[positive_u, positive_i] = float("-inf")
    found = top_ids >= 0
    rows = torch.arange(B, device=top_ids.device)[:, None].expand_as(top_ids)
    out[rows[found], top_ids[found]] = top_scores[found]
    out[:, 0] = float("-inf")
    return out
