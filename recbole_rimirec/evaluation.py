"""RecBole's top-k metrics from retrieved lists, with no dense [users x items] score matrix.

RecBole's Collector ranks a dense score matrix: ``topk`` of [B, n_items], and a [B, n_items]
matrix of positives. For a library of a million items that matrix does not fit. Every top-k metric
(Recall, NDCG, Hit, MRR, Precision, MAP) reads only ``rec.topk``: per user, a hit flag at each of
the first K ranks and the number of positives; the list metrics (ItemCoverage, GiniIndex, ...) read
``rec.items``, the top-K ids. Both come straight from a retrieved list. :class:`ListCollector`
takes ``(scores, ids)`` lists where RecBole's Collector takes the dense matrix, and gives the same
figures (tested).
"""

from __future__ import annotations

import numpy as np
import torch
from recbole.evaluator import Collector
from recbole.evaluator.register import metric_information

LIST_NEEDS = {"rec.topk", "rec.items", "data.num_items", "data.count_items"}  # what lists can give


def topk_hits(top_ids: torch.Tensor, positive_u: torch.Tensor, positive_i: torch.Tensor, k: int) -> torch.Tensor:
    """RecBole's ``rec.topk`` rows from retrieved lists: hit flags at ranks 1..k, then the positives' count.

    Args:
        top_ids: [B, K] retrieved item ids, best first (-1 or 0 in empty slots; K may be below k).
        positive_u: [P] row of each positive.
        positive_i: [P] item id of each positive.
        k: the longest cut-off.

    Returns:
        torch.Tensor: [B, k + 1] int, as RecBole's Collector builds from dense scores.
    """
    B, K = top_ids.shape
    ids = top_ids[:, :k] if K >= k else torch.cat([top_ids, top_ids.new_full((B, k - K), -1)], 1)  # [B, k]
    n = int(max(int(ids.max()) if ids.numel() else 0, int(positive_i.max()) if len(positive_i) else 0)) + 2
    keys = torch.unique(positive_u.to(ids.device) * n + positive_i.to(ids.device))  # a positive counts once
    rows = torch.arange(B, device=ids.device)[:, None]
    hits = torch.isin(rows * n + ids, keys) & (ids > 0)  # [B, k]
    pos_len = torch.bincount(torch.div(keys, n, rounding_mode="floor"), minlength=B)[:B]
    return torch.cat([hits.int(), pos_len[:, None].int()], 1)


def hit_record(topk: torch.Tensor) -> dict:
    """Per user, where the hits fell and how many targets there were: enough to recompute any top-k metric.

    Args:
        topk: [U, K + 1] RecBole's ``rec.topk`` (hit flags at ranks 1..K, then the positives' count).

    Returns:
        dict: ``ranks`` (per user, the 0-based ranks of the hits, ascending) and ``positives``
        (per user, the number of targets).
    """
    hits = topk[:, :-1].bool().cpu()  # [U, K]
    return {
        "ranks": [torch.nonzero(row).flatten().tolist() for row in hits],
        "positives": topk[:, -1].cpu().tolist(),
    }


def user_metric(ranks: list[list[int]], positives: list[int], metric: str) -> np.ndarray:
    """Each user's Recall@k, Hit@k or NDCG@k from a :func:`hit_record`, as RecBole defines them.

    Recall@k is the hits in the top k over the targets, Hit@k whether there is one, and NDCG@k the
    DCG of the hits over the DCG of min(targets, k) hits at the top (so the mean over users is
    RecBole's figure, before its rounding).

    Args:
        ranks: per user, the 0-based ranks of the hits.
        positives: per user, the number of targets (at least one).
        metric: ``recall@k``, ``hit@k`` or ``ndcg@k``.

    Returns:
        np.ndarray: [U] the metric per user.
    """
    name, _, cut = metric.lower().partition("@")
    k = int(cut)
    discount = 1.0 / np.log2(np.arange(k) + 2.0)  # [k]
    out = np.zeros(len(ranks))
    for u, (mine, p) in enumerate(zip(ranks, positives, strict=True)):
        inside = [r for r in mine if r < k]
        if name == "recall":
            out[u] = len(inside) / p
        elif name == "hit":
            out[u] = float(bool(inside))
        elif name == "ndcg":
            out[u] = discount[inside].sum() / discount[: min(p, k)].sum()
        else:
            raise ValueError(f"metric '{metric}' is not recall@k, hit@k or ndcg@k")
    return out


def list_metric_problem(metrics: list[str]) -> str | None:
    """Why a list of RecBole metrics cannot be computed from retrieved lists, or ``None``.

    Args:
        metrics: the run's ``metrics``.

    Returns:
        str | None: the first metric that needs every item's score, named.
    """
    for metric in metrics:
        needs = set(metric_information.get(metric.lower(), []))
        if not needs <= LIST_NEEDS:
            return f"metric {metric} needs every item's score ({', '.join(sorted(needs - LIST_NEEDS))})"
    return None


class ListCollector(Collector):
    """RecBole's Collector, fed with retrieved ``(scores, ids)`` lists instead of a dense score matrix."""

    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        if not isinstance(scores_tensor, tuple):  # a dense matrix after all: RecBole's own path
            return super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        _, top_ids = scores_tensor
        k = max(self.topk)
        if self.register.need("rec.items"):
            items = top_ids[:, :k].clamp(min=0)
            if items.shape[1] < k:
                items = torch.cat([items, items.new_zeros((len(items), k - items.shape[1]))], 1)
            self.data_struct.update_tensor("rec.items", items)
        if self.register.need("rec.topk"):
            self.data_struct.update_tensor("rec.topk", topk_hits(top_ids, positive_u, positive_i, k))
