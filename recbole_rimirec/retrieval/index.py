"""Top-k inner-product search inside one tree node's sub-library, with Faiss or exactly.

Items are stored in tree order (``perm``), so a node's sub-library is the contiguous range
``[lo, hi)``. The node ranges cut the permutation into elementary segments (the leaves, for a
tree); every node is a run of consecutive segments. The Faiss backend is one ``IndexIVFFlat``
with one inverted list per segment, filled with precomputed assignments, and answers every
(query, node) pair in a single ``search_preassigned`` call that probes exactly the node's
lists: an exact scan of the node's items, parallel in C++, with no Python loop over nodes.
Nodes with many queries over many items (``m * size >= BLAS_WORK``) are scored instead by one
matrix product over the node's lists, read in place from the index (a scan is slower than BLAS
there, in column blocks of at most ``BLAS_BLOCK`` scores (256 MB), so a million-item node never holds a
[queries x items] matrix); both give the exact top-k of the same items. The exact backend scores the same
ranges with torch matmul on the vectors' own device: the GPU path, with no trip to the host
(``auto`` picks it for vectors on a GPU, Faiss otherwise).
"""

from __future__ import annotations

import numpy as np
import torch

BACKENDS = ("auto", "faiss", "exact")


def resolve_backend(backend: str, device: torch.device) -> str:
    """The search backend ``auto`` stands for on a device.

    Args:
        backend: ``auto``, ``faiss`` or ``exact``.
        device: where the item vectors are.

    Returns:
        str: ``exact`` (torch, on the device) for ``auto`` on a GPU, ``faiss`` for ``auto`` elsewhere,
        else ``backend`` itself.
    """
    if backend != "auto":
        return backend
    return "exact" if torch.device(device).type == "cuda" else "faiss"


BLAS_WORK = 1 << 15  # (queries x items) of one node above which a matrix product beats the IVF scan
BLAS_BLOCK = 1 << 26  # the most scores (queries x items, 256 MB of float32) one block of that product holds


def blocked_topk(queries: torch.Tensor, vectors: torch.Tensor, k: int, block: int = BLAS_BLOCK):
    """Exact top-k inner products, scored in column blocks with a running top-k.

    The same result as ``(queries @ vectors.T).topk(k)`` (up to the order of exact ties), in
    memory bounded by ``block`` scores plus [m, 2k] instead of [m, n].

    Args:
        queries: [m, d] query vectors.
        vectors: [n, d] the vectors searched.
        k: results per query.
        block: the most scores one block holds; each block covers at least k columns.

    Returns:
        (values, indices): [m, min(k, n)] best first; indices are rows of ``vectors``.
    """
    m, n = queries.shape[0], vectors.shape[0]
    k = min(k, n)
    step = max(k, block // max(m, 1))  # k >= 1: every block holds at least k columns
    best_v, best_i = None, None
    for start in range(0, n, step):
        s = queries @ vectors[start : start + step].T  # [m, <= step]
        v, i = s.topk(min(k, s.shape[1]), dim=1)
        i = i + start
        if best_v is not None:  # merge with the best so far: [m, 2k] -> [m, k]
            v, i = torch.cat([best_v, v], dim=1), torch.cat([best_i, i], dim=1)
            v, pos = v.topk(k, dim=1)
            i = i.gather(1, pos)
        best_v, best_i = v, i
    return best_v, best_i


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
        backend: ``faiss``, ``exact`` or ``auto`` (see :func:`resolve_backend`).
    """

    def __init__(self, item_vectors: torch.Tensor, perm, lo, hi, backend: str = "faiss"):
        if backend not in BACKENDS:
            raise ValueError(f"retrieval backend '{backend}' is not one of {', '.join(BACKENDS)}")
        self.backend = backend = resolve_backend(backend, item_vectors.device)
        self.perm = torch.as_tensor(perm, dtype=torch.long, device=item_vectors.device)
        self.lo = torch.as_tensor(lo, dtype=torch.long).cpu().numpy()
        self.hi = torch.as_tensor(hi, dtype=torch.long).cpu().numpy()
        self._lo_t = torch.as_tensor(self.lo, device=item_vectors.device)  # for parts on the exact backend
        self._hi_t = torch.as_tensor(self.hi, device=item_vectors.device)
        ordered = item_vectors.detach()[self.perm].float().contiguous()  # [n_items - 1, d] tree order
        if backend == "faiss":
            self.vectors = None
            self._build_ivf(ordered.cpu().numpy())
        else:
            self.vectors = ordered

    def _build_ivf(self, ordered: np.ndarray) -> None:
        """One inverted list per elementary segment of the node ranges; ids are item ids."""
        faiss = self.faiss = import_faiss()
        n, d = ordered.shape
        bounds = np.unique(np.r_[0, n, self.lo, self.hi])  # [S + 1] segment boundaries
        self.first_list = np.searchsorted(bounds, self.lo)  # [N] each node's lists: [first, last)
        self.last_list = np.searchsorted(bounds, self.hi)
        nlist = len(bounds) - 1
        self.quantizer = faiss.IndexFlatIP(d)  # never searched: assignments are given
        self.quantizer.add(np.zeros((nlist, d), dtype=np.float32))
        self.index = faiss.IndexIVFFlat(self.quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        ids = self.perm.cpu().numpy().astype(np.int64)
        code = np.ascontiguousarray(ordered, dtype=np.float32).view(np.uint8)  # [n, 4d] raw bytes, as Faiss stores
        # Each segment is a contiguous block of the tree order: one append per list allocates it
        # once, at its exact size (adding vector by vector would leave growth slack in every list).
        for key, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            self.index.invlists.add_entries(key, int(hi - lo), faiss.swig_ptr(ids[lo:hi]), faiss.swig_ptr(code[lo:hi]))
        self.index.ntotal = n
        invlists = self.index.invlists
        self._codes, self._ids = [], []  # per list, views of the index's own storage (no copy)
        for key, size in enumerate(np.diff(bounds).tolist()):
            self._codes.append(
                faiss.rev_swig_ptr(invlists.get_codes(key), size * d * 4).view(np.float32).reshape(size, d)
            )
            self._ids.append(faiss.rev_swig_ptr(invlists.get_ids(key), size).view(np.int64))

    def search(self, queries: torch.Tensor, nodes: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Searches each query inside its node.

        Args:
            queries: [M, d] query vectors.
            nodes: [M] node id of each query.
            k: results per query.

        Returns:
            (scores, ids): [M, k] best first; missing results are ``-inf`` with id -1.
        """
        return self.search_with_logsumexp(queries, nodes, k)[:2]

    def search_with_logsumexp(self, queries: torch.Tensor, nodes: torch.Tensor, k: int, parts=None, z_queries=None):
        """:meth:`search`, plus each query's log-sum-exp of scores over its node.

        The exact backend scores every item of the node anyway, so its log-sum-exp is exact; the
        Faiss backend sees only the top k and returns their log-sum-exp (a lower bound, equal when
        the node holds at most k items).

        Args:
            queries: [M, d] query vectors.
            nodes: [M] node id of each query.
            k: results per query.
            parts: ``None``, or [M, P] ids of nodes inside each query's node (-1 pads): the query
                searches the union of these parts instead of its whole node.
            z_queries: ``None``, or [M, d] other vectors whose scores the log-sum-exp is taken over
                (the ranking stays ``queries``'). The exact backend scores them in the same pass over
                each node; Faiss searches again with them (their own top k).

        Returns:
            (scores, ids, log_z): [M, k], [M, k] as :meth:`search`; [M] log-sum-exp over what was searched.
        """
        M = len(queries)
        if self.backend == "faiss" and M > 0:
            if parts is not None:
                scores, ids = self._search_parts_ivf(queries, parts.cpu().numpy(), k)
            else:
                scores, ids = self._search_ivf(queries, nodes.cpu().numpy(), k)
            if z_queries is not None:  # a second scan: cheaper than gathering the found items' vectors
                return scores, ids, self.search_with_logsumexp(z_queries, nodes, k, parts)[2]
            return scores, ids, torch.logsumexp(scores, dim=1)
        scores = torch.full((M, k), float("-inf"), device=queries.device)
        ids = torch.full((M, k), -1, dtype=torch.long, device=queries.device)
        log_z = torch.full((M,), float("-inf"), device=queries.device)
        if M == 0:
            return scores, ids, log_z
        node_np = nodes.cpu().numpy()
        order = np.argsort(node_np, kind="stable")
        bounds = np.flatnonzero(np.r_[True, node_np[order][1:] != node_np[order][:-1], True])
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):
            rows = torch.as_tensor(order[start:end], device=queries.device)
            node = int(node_np[order[start]])
            lo, hi = int(self.lo[node]), int(self.hi[node])
            s = queries[rows].float() @ self.vectors[lo:hi].T  # [m, hi - lo]
            outside = None
            if parts is not None:  # keep the columns inside the query's parts
                p = parts[rows]  # [m, P]
                col = torch.arange(lo, hi, device=queries.device)[None, None, :]  # [1, 1, hi - lo]
                p_lo = self._lo_t[p.clamp(min=0)].masked_fill(p < 0, 0)[:, :, None]  # [m, P, 1]
                p_hi = self._hi_t[p.clamp(min=0)].masked_fill(p < 0, 0)[:, :, None]
                outside = ~((col >= p_lo) & (col < p_hi)).any(1)  # [m, hi - lo]
                s = s.masked_fill(outside, float("-inf"))
            top = s.topk(min(k, hi - lo), dim=1)
            found = torch.isfinite(top.values)
            scores[rows, : top.values.shape[1]] = top.values
            ids[rows, : top.values.shape[1]] = torch.where(found, self.perm[top.indices + lo], -1)
            if z_queries is not None:  # the same columns, scored by the other vectors
                s = z_queries[rows].float() @ self.vectors[lo:hi].T  # [m, hi - lo]
                s = s if outside is None else s.masked_fill(outside, float("-inf"))
            log_z[rows] = torch.logsumexp(s, dim=1)
        return scores, ids, log_z

    def _search_parts_ivf(self, queries: torch.Tensor, parts: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each query scans the inverted lists of its parts, in one ``search_preassigned`` call."""
        x = np.ascontiguousarray(queries.detach().float().cpu().numpy())  # [M, d]
        valid = parts >= 0  # [M, P]
        part = np.where(valid, parts, 0)
        first, count = self.first_list[part], np.where(valid, self.last_list[part] - self.first_list[part], 0)
        total = count.sum(1)  # [M] lists per query
        nprobe = max(int(total.max()), 1)
        lists = np.full((len(x), nprobe), -1, dtype=np.int64)
        row = np.repeat(np.arange(len(x)), total)  # one entry per (query, list)
        start = np.repeat(first.ravel(), count.ravel())  # each part's first list, repeated per list
        offset = np.arange(len(start)) - np.repeat(np.cumsum(count.ravel()) - count.ravel(), count.ravel())
        slot = np.arange(len(row)) - np.repeat(np.cumsum(total) - total, total)
        lists[row, slot] = start + offset
        self.index.nprobe = nprobe
        d_, l_ = self.index.search_preassigned(x, k, lists, None)
        device = queries.device
        dist = np.where(l_ >= 0, d_, -np.inf).astype(np.float32)
        return torch.from_numpy(dist).to(device), torch.from_numpy(l_).to(device)

    def _search_ivf(self, queries: torch.Tensor, nodes: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Scans small work in one ``search_preassigned`` call; large per-node work by BLAS."""
        x = np.ascontiguousarray(queries.detach().float().cpu().numpy())  # [M, d]
        M = len(x)
        dist = np.full((M, k), -np.inf, dtype=np.float32)
        label = np.full((M, k), -1, dtype=np.int64)
        uniq, inverse, counts = np.unique(nodes, return_inverse=True, return_counts=True)
        sizes = self.hi[uniq] - self.lo[uniq]
        dense = counts * sizes >= BLAS_WORK  # [U] nodes scored by a matrix product
        for u in np.flatnonzero(dense):
            rows = np.flatnonzero(inverse == u)
            first, last = self.first_list[uniq[u]], self.last_list[uniq[u]]
            vec = self._codes[first] if last - first == 1 else np.concatenate(self._codes[first:last])
            item = self._ids[first] if last - first == 1 else np.concatenate(self._ids[first:last])
            values, indices = blocked_topk(torch.from_numpy(x[rows]), torch.from_numpy(vec), k)  # [m, <= k]
            dist[rows, : values.shape[1]] = values.numpy()
            label[rows, : values.shape[1]] = item[indices.numpy()]
        rows = np.flatnonzero(~dense[inverse])
        if len(rows):
            node = nodes[rows]
            first, count = self.first_list[node], self.last_list[node] - self.first_list[node]  # [m]
            nprobe = int(count.max())
            probe = np.arange(nprobe)[None, :]
            lists = np.where(probe < count[:, None], first[:, None] + probe, -1)  # [m, nprobe]; -1 is skipped
            self.index.nprobe = nprobe
            d_, l_ = self.index.search_preassigned(x[rows], k, lists, None)
            dist[rows], label[rows] = np.where(l_ >= 0, d_, -np.inf), l_
        device = queries.device
        return torch.from_numpy(dist).to(device), torch.from_numpy(label).to(device)
