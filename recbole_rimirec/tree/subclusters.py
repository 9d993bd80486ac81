"""Sub-clusters of the tree's leaves by the model's own item vectors, for serving.

The item tree comes from co-occurrence vectors of the training split, built before the model
trains; its leaves are coherent in who-buys-what-with-what but not compact in the space where the
model scores items. Cutting each leaf, at serving time, into small k-means clusters of the learned
item vectors gives compact sub-libraries whose mean vector estimates the global head's mass well
(``logsumexp_c h . c + log n_c``), so a selection can keep the parts of the generator's leaves that
the user's state points at (:func:`recbole_rimirec.retrieval.selection.select_subclusters`).

The split reorders items inside each leaf only: every tree node keeps its range of the
permutation, and each sub-cluster is a contiguous range inside its leaf. Plain functions on
tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recbole_rimirec.tree.tensors import TreeTensors


@dataclass
class LeafSplit:
    """Sub-clusters of every leaf.

    Attributes:
        perm: [n_items - 1] item ids in tree order, each leaf's items grouped by sub-cluster.
        lo, hi: [C] each sub-cluster's range in ``perm`` (inside its leaf's range).
        leaf: [C] the leaf holding each sub-cluster.
        centroid: [C, H] mean item vector of each sub-cluster.
        size: [C] items in each sub-cluster.
        cluster: [n_items] each item's sub-cluster (-1 for padding).
    """

    perm: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    leaf: torch.Tensor
    centroid: torch.Tensor
    size: torch.Tensor
    cluster: torch.Tensor


def batched_kmeans(
    x: torch.Tensor, real: torch.Tensor, k: torch.Tensor, iters: int = 10, seed: int = 0
) -> torch.Tensor:
    """Lloyd's k-means on many small point sets at once (one row each, padded).

    Seeding is deterministic: each row's points are ordered along one random direction (the same
    for every row, from ``seed``) and its ``k`` first centres are the points at evenly spaced
    quantiles of that order, so the centres start spread along the row's largest spread direction
    more often than not.

    Args:
        x: [L, S, H] points, padded.
        real: [L, S] bool, False on padding (each row has at least one real point first).
        k: [L] clusters wanted per row (1 <= k <= real points of the row).
        iters: Lloyd iterations.
        seed: seed of the projection.

    Returns:
        torch.Tensor: [L, S] cluster of each point in ``0..k-1`` (-1 on padding); a cluster may end empty.
    """
    L, S, H = x.shape
    K = int(k.max())
    n = real.sum(1)  # [L]
    direction = torch.randn(H, generator=torch.Generator().manual_seed(seed)).to(x)
    along = (x @ direction).masked_fill(~real, float("inf"))  # [L, S] padding sorts last
    order = along.argsort(1)  # [L, S]
    slot = torch.arange(K, device=x.device)[None, :]  # [1, K]
    pick = ((slot + 0.5) * n[:, None] / k[:, None]).long().clamp(max=S - 1)  # [L, K] quantile positions
    centres = x.gather(1, order.gather(1, pick)[:, :, None].expand(L, K, H))  # [L, K, H]
    unused = slot >= k[:, None]  # [L, K] clusters a row does not have
    label = torch.zeros(L, S, dtype=torch.long, device=x.device)
    for _ in range(iters):
        dist = torch.cdist(x, centres).masked_fill(unused[:, None, :], float("inf"))  # [L, S, K]
        label = dist.argmin(2)  # [L, S]
        weight = real.to(x.dtype)[:, :, None]  # [L, S, 1]
        sums = torch.zeros_like(centres).scatter_add_(1, label[:, :, None].expand(L, S, H), x * weight)
        counts = torch.zeros(L, K, device=x.device, dtype=x.dtype).scatter_add_(1, label, weight[:, :, 0])
        centres = torch.where(counts[:, :, None] > 0, sums / counts.clamp(min=1)[:, :, None], centres)
    return label.masked_fill(~real, -1)


def split_leaves(item_vectors: torch.Tensor, tree: TreeTensors, sub_size: int, iters: int = 10) -> LeafSplit:
    """Cuts every leaf into ``ceil(|leaf| / sub_size)`` k-means clusters of its items' vectors.

    Leaves are clustered in batches of similar size (padded to the next power of two), with no
    loop over leaves.

    Args:
        item_vectors: [n_items, H] the item tower (row 0 is padding).
        tree: the tree's tensors.
        sub_size: the mean size of a sub-cluster (a leaf this small stays whole).
        iters: Lloyd iterations.

    Returns:
        LeafSplit: the sub-clusters, in tree order.
    """
    device = item_vectors.device
    vectors = item_vectors.detach().float()
    perm = tree.perm
    n = len(perm)
    leaves = tree.is_leaf.nonzero().squeeze(1)
    leaves = leaves[tree.size[leaves] > 0]
    lo, size = tree.lo[leaves], tree.size[leaves]  # [F]
    label = torch.zeros(n, dtype=torch.long, device=device)  # each tree position's cluster inside its leaf
    bucket = torch.ceil(torch.log2(size.float())).long()  # [F] leaves padded to 2 ** bucket
    for b in bucket.unique().tolist():
        rows = (bucket == b).nonzero().squeeze(1)
        width = 1 << b
        pos = lo[rows][:, None] + torch.arange(width, device=device)[None, :]  # [L, S] tree positions
        real = pos < (lo[rows] + size[rows])[:, None]
        x = vectors[perm[pos.clamp(max=n - 1)]]  # [L, S, H]
        k = torch.clamp((size[rows] + sub_size - 1) // sub_size, min=1)
        found = batched_kmeans(x, real, k, iters)
        label[pos[real]] = found[real]
    # regroup every leaf's positions by cluster: one stable sort by (leaf start, cluster)
    leaf_of_position = tree.leaf[perm]  # [n] the leaves tile the tree order
    key = tree.lo[leaf_of_position] * (int(label.max()) + 1) + label  # [n]
    order = torch.argsort(key, stable=True)
    new_perm = perm[order]
    _, counts = torch.unique_consecutive(key[order], return_counts=True)  # the sub-clusters, in tree order
    hi = counts.cumsum(0)
    lo_c = hi - counts
    cluster = torch.full((len(vectors),), -1, dtype=torch.long, device=device)
    cluster[new_perm] = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    centroid = torch.zeros(len(counts), vectors.shape[1], device=device).index_add_(
        0, cluster[new_perm], vectors[new_perm]
    ) / counts[:, None].to(vectors.dtype)
    return LeafSplit(
        perm=new_perm,
        lo=lo_c,
        hi=hi,
        leaf=leaf_of_position[lo_c],
        centroid=centroid,
        size=counts,
        cluster=cluster,
    )
