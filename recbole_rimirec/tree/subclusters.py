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

import math
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


def kmeans(x: torch.Tensor, k: int, iters: int = 10, seed: int = 0) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding (deterministic for a seed).

    Args:
        x: [n, H] points.
        k: clusters wanted (at most n).
        iters: Lloyd iterations.
        seed: seed of the k-means++ draws.

    Returns:
        torch.Tensor: [n] cluster of each point, in ``0..k-1`` (a cluster may end empty).
    """
    n = len(x)
    if k <= 1 or n <= 1:
        return torch.zeros(n, dtype=torch.long, device=x.device)
    gen = torch.Generator().manual_seed(seed)
    centres = [x[int(torch.randint(n, (1,), generator=gen))]]
    dist = ((x - centres[0]) ** 2).sum(1)  # [n]
    for _ in range(1, k):
        weights = dist.cpu().double()
        pick = int(torch.multinomial(weights / weights.sum(), 1, generator=gen)) if weights.sum() > 0 else 0
        centres.append(x[pick])
        dist = torch.minimum(dist, ((x - x[pick]) ** 2).sum(1))
    c = torch.stack(centres)  # [k, H]
    label = torch.zeros(n, dtype=torch.long, device=x.device)
    for _ in range(iters):
        label = torch.cdist(x, c).argmin(1)  # [n]
        sums = torch.zeros_like(c).index_add_(0, label, x)
        counts = torch.bincount(label, minlength=k).to(x.dtype)
        c = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], c)  # empty: keep its centre
    return label


def split_leaves(item_vectors: torch.Tensor, tree: TreeTensors, sub_size: int, iters: int = 10) -> LeafSplit:
    """Cuts every leaf into ``ceil(|leaf| / sub_size)`` k-means clusters of its items' vectors.

    Args:
        item_vectors: [n_items, H] the item tower (row 0 is padding).
        tree: the tree's tensors.
        sub_size: the mean size of a sub-cluster (a leaf this small stays whole).
        iters: Lloyd iterations.

    Returns:
        LeafSplit: the sub-clusters, in tree order.
    """
    vectors = item_vectors.detach().float().cpu()
    perm = tree.perm.clone().cpu()
    lo_out, hi_out, leaf_out = [], [], []
    leaves = tree.is_leaf.nonzero().squeeze(1)
    for leaf, lo, hi in zip(leaves.tolist(), tree.lo[leaves].tolist(), tree.hi[leaves].tolist(), strict=True):
        if hi <= lo:
            continue
        items = tree.perm[lo:hi].cpu()  # [n] the leaf's items
        label = kmeans(vectors[items], math.ceil((hi - lo) / sub_size), iters, seed=leaf)
        order = torch.argsort(label, stable=True)
        perm[lo:hi] = items[order]
        counts = torch.bincount(label).tolist()
        start = lo
        for count in counts:
            if count:
                lo_out.append(start)
                hi_out.append(start + count)
                leaf_out.append(leaf)
                start += count
    order = torch.argsort(torch.tensor(lo_out, dtype=torch.long))  # sub-clusters in tree order
    lo_t, hi_t = torch.tensor(lo_out, dtype=torch.long)[order], torch.tensor(hi_out, dtype=torch.long)[order]
    leaf_t = torch.tensor(leaf_out, dtype=torch.long)[order]
    size = hi_t - lo_t  # the ranges tile the permutation: the leaves do, and each leaf's clusters tile it
    cluster = torch.full((len(vectors),), -1, dtype=torch.long)
    cluster[perm] = torch.repeat_interleave(torch.arange(len(size)), size)
    centroid = torch.zeros(len(size), vectors.shape[1]).index_add_(0, cluster[perm], vectors[perm])
    centroid = centroid / size[:, None].to(centroid.dtype)
    device = item_vectors.device
    return LeafSplit(
        perm=perm.to(device),
        lo=lo_t.to(device),
        hi=hi_t.to(device),
        leaf=leaf_t.to(device),
        centroid=centroid.to(device),
        size=size.to(device),
        cluster=cluster.to(device),
    )
