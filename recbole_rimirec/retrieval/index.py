"""Top-k inner-product search inside one tree node's sub-library, with Faiss or exactly.

Items are stored in tree order (``perm``), so a node's sub-library is the contiguous range
``[lo, hi)``. The Faiss backend keeps one ``IndexFlatIP`` and restricts each search with
``IDSelectorRange``, which slices the database and keeps the BLAS path; queries for the same
node are searched together. The exact backend does the same with torch matmul on slices, to
check Faiss against and to run on GPU.
"""

from __future__ import annotations

import numpy as np
import torch

BACKENDS = ("faiss", "exact")


def import_faiss():
    """Imports faiss without its loader's INFO lines about missing AVX builds."""
    import logging

    loader = logging.getLogger("faiss.loader")
    level = loader.level
    loader.setLevel(logging.WARNING)
    try:
        import faiss
    finally:
        loader.setLevel(level)
    return faiss


class NodeIndex:
    """Per-node top-k search.

    Args:
        item_vectors: [n_items, d] item-tower vectors by item id (row 0 is padding).
        perm: [n_items - 1] item ids in tree order.
        lo, hi: [N] each node's range in ``perm``.
        backend: ``faiss`` or ``exact``.
    """

    def __init__(self, item_vectors: torch.Tensor, perm, lo, hi, backend: str = "faiss"):
        if backend not in BACKENDS:
            raise ValueError(f"retrieval backend '{backend}' is not one of {', '.join(BACKENDS)}")
        self.backend = backend
        self.perm = torch.as_tensor(perm, dtype=torch.long, device=item_vectors.device)
        self.lo = torch.as_tensor(lo, dtype=torch.long).cpu().numpy()
        self.hi = torch.as_tensor(hi, dtype=torch.long).cpu().numpy()
        ordered = item_vectors.detach()[self.perm].float().contiguous()  # [n_items - 1, d] tree order
        if backend == "faiss":
            faiss = self.faiss = import_faiss()
            self.index = faiss.IndexFlatIP(ordered.shape[1])
            self.index.add(ordered.cpu().numpy())  # Faiss keeps its own copy; ours is dropped
            self.vectors = None
        else:
            self.vectors = ordered

    def search(self, queries: torch.Tensor, nodes: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Searches each query inside its node.

        Args:
            queries: [M, d] query vectors.
            nodes: [M] node id of each query.
            k: results per query.

        Returns:
            (scores, ids): [M, k] best first; missing results are ``-inf`` with id -1.
        """
        M = len(queries)
        scores = torch.full((M, k), float("-inf"), device=queries.device)
        ids = torch.full((M, k), -1, dtype=torch.long, device=queries.device)
        if M == 0:
            return scores, ids
        node_np = nodes.cpu().numpy()
        order = np.argsort(node_np, kind="stable")
        bounds = np.flatnonzero(np.r_[True, node_np[order][1:] != node_np[order][:-1], True])
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            rows = torch.as_tensor(order[start:end], device=queries.device)
            node = int(node_np[order[start]])
            s, pos = self._search_range(queries[rows], int(self.lo[node]), int(self.hi[node]), k)
            found = pos >= 0
            scores[rows, : s.shape[1]] = torch.where(found, s, torch.full_like(s, float("-inf")))
            ids[rows, : s.shape[1]] = torch.where(found, self.perm[pos.clamp(min=0)], torch.full_like(pos, -1))
        return scores, ids

    def _search_range(self, q: torch.Tensor, lo: int, hi: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k of q over tree positions [lo, hi): (scores, positions) with position -1 for none."""
        if self.backend == "exact":
            s = q.float() @ self.vectors[lo:hi].T  # [m, hi - lo]
            top = s.topk(min(k, hi - lo), dim=1)
            return top.values, top.indices + lo
        faiss = self.faiss
        params = faiss.SearchParameters(sel=faiss.IDSelectorRange(lo, hi))
        x = np.ascontiguousarray(q.detach().float().cpu().numpy())
        threshold = faiss.cvar.distance_compute_blas_threshold
        faiss.cvar.distance_compute_blas_threshold = 1  # small batches: BLAS is still faster than the scalar scan
        try:
            dist, label = self.index.search(x, min(k, hi - lo), params=params)
        finally:
            faiss.cvar.distance_compute_blas_threshold = threshold
        dist, label = torch.from_numpy(dist).to(q.device), torch.from_numpy(label).to(q.device)
        return dist, label  # Faiss pads missing results with label -1 and a huge negative distance
