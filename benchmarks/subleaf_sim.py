"""Would splitting the selected leaves by the model's own item vectors buy back the selection's loss?

RimiRec's density rule fills 10% of the library with whole leaves of a co-occurrence tree. Picked by
the global head's exact mass, the same 10% loses nothing (docs/rimirec.md); picked by a cheap
estimate over a leaf's mean vector it loses more than the generator, because a leaf is not compact
in the model's embedding space. This script simulates a two-stage rule on a saved run, densely (every
user's scores over the whole library, then masked), without changing the model:

1. the generator picks leaves by density up to ``--stage1`` of the library;
2. each leaf is cut into sub-clusters by k-means of its items' learned vectors (about ``--sub_size``
   items each: compact by construction); a sub-cluster's priority is P(leaf | u) times its share of
   the leaf under a centroid estimate of the global head (``logsumexp_c h . c + log n_c``), per item;
3. sub-clusters are taken best first until ``--budget`` of the library is filled, and the items in
   them are ranked by the run's merge score (``mixed``: alpha log P(leaf | u) + u_leaf . v - log Z +
   beta h . v, with log Z over the searched items of the leaf, as the exact backend computes it).

With one sub-cluster per leaf and ``--stage1`` equal to ``--budget`` it is the density rule itself
(the first row checks that against the model's own retrieval). ``teacher`` rows order the
sub-clusters by the global head's exact mass instead (a bound: it scores every item).

Run: python benchmarks/subleaf_sim.py <checkpoint.pth> --out <file>.json [--split valid]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from rimirec_analysis import header, load, metrics  # noqa: E402

from recbole_rimirec.retrieval.selection import group_logsumexp  # noqa: E402


def subclusters(net, sub_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Each item's sub-cluster inside its leaf, by k-means of the learned item vectors.

    Args:
        net: a RimiRec model.
        sub_size: the mean sub-cluster size wanted (a leaf of n items gets ceil(n / sub_size) clusters).
        seed: k-means seed.

    Returns:
        (cluster, owner): [n_items] cluster id of each item (-1 for padding); [C] leaf of each cluster.
    """
    from sklearn.cluster import KMeans

    tree, weight = net.tree, net.item_embedding.weight.detach().numpy()
    cluster = torch.full((len(weight),), -1, dtype=torch.long)
    owner, next_id = [], 0
    for leaf in tree.is_leaf.nonzero().squeeze(1).tolist():
        items = torch.nonzero(tree.leaf == leaf).squeeze(1)
        items = items[items > 0]
        if len(items) == 0:
            continue
        m = max(1, math.ceil(len(items) / sub_size))
        labels = (
            np.zeros(len(items), int) if m == 1 else KMeans(m, n_init=1, random_state=seed).fit_predict(weight[items])
        )
        cluster[items] = torch.as_tensor(labels, dtype=torch.long) + next_id
        owner += [leaf] * m
        next_id += m
    return cluster, torch.as_tensor(owner)


@torch.no_grad()
def simulate(net, loader, cluster, owner, stage1: float, budget: float, order: str, max_nodes: int) -> dict:
    """Scores one split under the two-stage rule.

    Args:
        net: the RimiRec model (its alpha, score weights).
        loader: an evaluation loader (one held-out item per user).
        cluster, owner: from :func:`subclusters`.
        stage1: library fraction the generator's leaves may cover.
        budget: library fraction the chosen sub-clusters may cover.
        order: ``centroid`` (the serving estimate) or ``teacher`` (exact global-head mass, a bound).
        max_nodes: the most leaves of stage 1.

    Returns:
        dict: metrics, coverage and the library fraction searched.
    """
    from recbole_rimirec.retrieval.selection import select_leaves

    tree = net.tree
    V = net.item_embedding.weight  # [n, H]
    n_items, C = int(tree.size[0]), len(owner)
    real = cluster >= 0  # [n] padding excluded
    items = torch.nonzero(real).squeeze(1)  # [n-1]
    item_cluster, item_leaf = cluster[items], tree.leaf[items]  # [n-1]
    sizes = torch.bincount(item_cluster, minlength=C).float()  # [C]
    centres = torch.zeros(C, V.shape[1]).index_add_(0, item_cluster, V[items]) / sizes[:, None]
    shift_dot = (net.tower.shift.weight[item_leaf] * V[items]).sum(1)  # [n-1] e_leaf . v (add conditioning)
    ranks, covered, searched = [], [], []
    for batch in loader:
        inter = batch[0]
        target = inter[net.ITEM_ID]
        h = net.forward(inter[net.ITEM_SEQ], inter[net.ITEM_SEQ_LEN])  # [B, H]
        log_p = net.generator(h)  # [B, N]
        leaves = select_leaves(log_p, tree, max(1, round(stage1 * n_items)), max_nodes, "density")  # [B, N]
        hv = h @ V[items].T  # [B, n-1]
        if order == "teacher":
            est = group_logsumexp(hv, item_cluster, C)  # [B, C] exact log mass (unnormalised)
        else:
            est = h @ centres.T + sizes.log()[None]  # [B, C]
        share = est - group_logsumexp(est, owner, tree.num_nodes).gather(1, owner.expand(len(h), -1))  # log P(c | leaf)
        priority = log_p[:, owner] + share - sizes.log()[None]  # [B, C] mass per item
        priority = priority.masked_fill(~leaves[:, owner], float("-inf"))
        ranked = priority.argsort(1, descending=True)  # [B, C]
        cum = sizes[ranked].cumsum(1)  # [B, C]
        allow = max(1, round(budget * n_items))
        take_sorted = (cum <= allow) & torch.isfinite(priority.gather(1, ranked))
        take_sorted[:, 0] |= torch.isfinite(priority.gather(1, ranked[:, :1])).squeeze(1)  # at least one
        chosen = torch.zeros_like(take_sorted).scatter_(1, ranked, take_sorted)  # [B, C]
        mask = chosen[:, item_cluster]  # [B, n-1]
        u_dot = (hv + shift_dot[None]).masked_fill(~mask, float("-inf"))  # u_leaf . v on searched items
        log_z = group_logsumexp(u_dot, item_leaf, tree.num_nodes).gather(1, item_leaf.expand(len(h), -1))
        score = net.alpha * log_p[:, item_leaf] + u_dot - log_z
        if net.score == "mixed":
            score = score + net.global_score_weight * hv
        score = score.masked_fill(~mask, float("-inf"))
        col = torch.searchsorted(items, target)  # target's column
        t_score = score.gather(1, col[:, None])
        inside = mask.gather(1, col[:, None]).squeeze(1)
        rank = (score > t_score).sum(1)
        rank = torch.where(inside & (rank < 50), rank, -1)
        ranks.append(rank)
        covered.append(inside)
        searched.append(mask.sum(1))
    rank = torch.cat(ranks).numpy()
    return {
        **metrics(rank),
        "coverage": float(torch.cat(covered).float().mean()),
        "library_fraction": float(torch.cat(searched).float().mean() / n_items),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--out", required=True)
    parser.add_argument("--split", default="valid", choices=["valid", "test"])
    parser.add_argument("--budget", type=float, default=0.1)
    parser.add_argument("--stage1", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    parser.add_argument("--sub_size", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--orders", nargs="+", default=["centroid", "teacher"])
    parser.add_argument("--max_nodes", type=int, default=256, help="the most leaves of stage 1")
    parser.add_argument("--retrieval_score", help="merge score (default: the run's own)")
    parser.add_argument("--global_score_weight", type=float, help="beta of mixed (default: the run's own)")
    args = parser.parse_args(argv)
    net, loader, _, config = load(args.checkpoint, args.split)
    if args.retrieval_score:
        net.score = args.retrieval_score
    if args.global_score_weight is not None:
        net.global_score_weight = args.global_score_weight
    rows = []
    plain = subclusters(net, 10**9)  # one cluster per leaf: the density rule itself
    row = {"sub_size": "leaf", "stage1": args.budget, "order": "centroid", "max_nodes": 64}
    row.update(simulate(net, loader, *plain, args.budget, args.budget, "centroid", 64))
    rows.append(row)
    print(json.dumps(row), flush=True)
    for sub_size in args.sub_size:
        found = subclusters(net, sub_size)
        for stage1 in args.stage1:
            for order in args.orders:
                row = {"sub_size": sub_size, "stage1": stage1, "order": order, "max_nodes": args.max_nodes}
                row.update(simulate(net, loader, *found, stage1, args.budget, order, args.max_nodes))
                rows.append(row)
                print(json.dumps(row), flush=True)
    result = {
        **header(args.checkpoint, config, args.split),
        "budget": args.budget,
        "retrieval_score": net.score,
        "global_score_weight": net.global_score_weight,
        "alpha": net.alpha,
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
