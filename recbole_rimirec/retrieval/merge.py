"""Merging candidate lists from several interests or tree nodes into one top-N list.

Plain functions on tensors, usable without a RecBole run.
"""

from __future__ import annotations

import torch


def merge_topk(scores: torch.Tensor, ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Merges per-source candidate lists by score, keeping each item's best score once.

    Args:
        scores: [B, M] candidate scores (``-inf`` marks an empty slot).
        ids: [B, M] candidate item ids (an item may appear under several sources).
        k: list length N.

    Returns:
        (top_scores, top_ids): [B, k] best first; slots past the distinct candidates hold
        ``-inf`` and id -1.
    """
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
