"""Sub-clusters of the tree's leaves by the model's own item vectors, for serving.

The item tree comes from co-occurrence vectors of the training split, built before the model
trains; its leaves are coherent in who-buys-what-with-what but not compact in the space where the
model scores items. Cutting each leaf, at serving time, into small k-means clusters of the learned
item vectors gives compact sub-libraries whose mean vector estimates the global head's mass well
(``logsumexp_c h . c + log n_c``), so a selection can keep the parts of the generator's leaves that
the user's state points at (:func:`recbole_rimirec.retrieval.selection.subcluster_pairs`).

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


def leaf_parts(vectors: torch.Tensor, tree: TreeTensors, cap: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cuts every leaf larger than ``cap`` into ``ceil(|leaf| / cap)`` near-equal parts along one direction.

    A large leaf's items are first ordered along the random direction that also seeds
    :func:`batched_kmeans`, then cut into consecutive parts, so k-means runs on parts of bounded
    size: its cost grows with the library, not with the square of the largest leaf (a leaf of cold
    items, which co-occurrence cannot split, may hold most of a large library). Smaller leaves are
    one part each, in their own order.

    Args:
        vectors: [n_items, H] item vectors.
        tree: the tree's tensors.
        cap: the most items of one part (>= 1).
        seed: seed of the direction.

    Returns:
        (perm, unit): [n_items - 1] the tree order with each large leaf's items ordered along the
        direction (every node keeps its range); [n_items - 1] each position's part, numbered in tree order.
    """
    perm, n = tree.perm, len(tree.perm)
    leaves = tree.is_leaf.nonzero().squeeze(1)
    leaves = leaves[tree.size[leaves] > 0]
    leaves = leaves[torch.argsort(tree.lo[leaves])]  # [F] the leaves in tree order: they tile it
    size = tree.size[leaves]  # [F]
    parts = (size + cap - 1) // cap  # [F]
    first_part = parts.cumsum(0) - parts  # [F] each leaf's first part id
    which = torch.searchsorted(tree.lo[leaves], torch.arange(n, device=perm.device), right=True) - 1  # [n] leaf
    big = size[which] > cap  # [n] positions in a leaf that is cut
    if bool(big.any()):
        direction = torch.randn(vectors.shape[1], generator=torch.Generator().manual_seed(seed)).to(vectors)
        along = torch.zeros(n, dtype=vectors.dtype, device=vectors.device)
        along[big] = vectors[perm[big]] @ direction
        order = torch.argsort(along, stable=True)  # then by leaf, stably: each cut leaf sorted along the direction
        perm = perm[order[torch.argsort(which[order], stable=True)]]
    rank = torch.arange(n, device=perm.device) - tree.lo[leaves][which]  # [n] position inside its leaf
    return perm, first_part[which] + rank * parts[which] // size[which]


def split_leaves(
    item_vectors: torch.Tensor,
    tree: TreeTensors,
    sub_size: int,
    iters: int = 10,
    max_clusters: int = 64,
    max_elements: int = 1 << 24,
) -> LeafSplit:
    """Cuts every leaf into ``ceil(|leaf| / sub_size)`` k-means clusters of its items' vectors.

    Leaves are clustered in batches of similar size (padded to the next power of two), with no
    loop over leaves. A leaf of more than ``max_clusters * sub_size`` items is first cut into parts
    of at most that size along one direction (:func:`leaf_parts`), each part clustered on its own;
    each batch is cut into chunks whose distance array holds at most ``max_elements`` entries, so
    time and memory grow with the library, not with the square of a leaf.

    Args:
        item_vectors: [n_items, H] the item tower (row 0 is padding).
        tree: the tree's tensors.
        sub_size: the mean size of a sub-cluster (a leaf this small stays whole).
        iters: Lloyd iterations.
        max_clusters: the most clusters of one k-means run.
        max_elements: the most entries of one chunk's [leaves, size, clusters] distances.

    Returns:
        LeafSplit: the sub-clusters, in tree order.
    """
    device = item_vectors.device
    vectors = item_vectors.detach().float()
    perm, unit = leaf_parts(vectors, tree, max_clusters * sub_size)  # [n], [n]
    n = len(perm)
    _, unit_size = torch.unique_consecutive(unit, return_counts=True)  # [F] the parts tile the tree order
    unit_lo = unit_size.cumsum(0) - unit_size
    label = torch.zeros(n, dtype=torch.long, device=device)  # each tree position's cluster inside its part
    bucket = torch.ceil(torch.log2(unit_size.float())).long()  # [F] parts padded to 2 ** bucket
    for b in bucket.unique().tolist():
        width = 1 << b
        rows = (bucket == b).nonzero().squeeze(1)
        k = torch.clamp((unit_size[rows] + sub_size - 1) // sub_size, min=1)  # [L]
        step = max(1, max_elements // (width * int(k.max())))
        for chunk in range(0, len(rows), step):
            part, part_k = rows[chunk : chunk + step], k[chunk : chunk + step]
            pos = unit_lo[part][:, None] + torch.arange(width, device=device)[None, :]  # [L, S] tree positions
            real = pos < (unit_lo[part] + unit_size[part])[:, None]
            x = vectors[perm[pos.clamp(max=n - 1)]]  # [L, S, H]
            found = batched_kmeans(x, real, part_k, iters)
            label[pos[real]] = found[real]
    # regroup every part's positions by cluster: one stable sort by (part, cluster)
    key = unit * (int(label.max()) + 1) + label  # [n]
    order = torch.argsort(key, stable=True)
    new_perm = perm[order]
    leaf_of_position = tree.leaf[new_perm]
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
