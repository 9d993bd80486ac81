"""tree-report: the item tree of a saved RimiRec run, its shape, purity and usefulness.

Reference: H. Pei et al., RimiRec, stage 1 (the item tree from hierarchical k-means). The report:

* per level: how many nodes, how many are leaves, their sizes and balance (the entropy of the
  size distribution over its maximum, 1 = equal sizes);
* purity against an item category field, when the run loaded one: NMI and ARI of each level's
  node assignment against the category, beside a random tree of the same shape (the same node
  sizes, items shuffled);
* usefulness: how often the held-out item's node at each level is among the user's top B nodes
  by P(node | user), against the B most popular nodes;
* a picture (``tree_report*.png``, needs matplotlib): an icicle of the top two levels, each node's
  width its size, coloured by a sampled user's P(node | user).

``recbole-rimirec tree-report CHECKPOINT [--field NAME] [--out report.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

from recbole_rimirec.errors import ConfigError

TOPS = (1, 5, 10)


def level_shapes(tree) -> list[dict]:
    """Per level: node count, leaves, sizes and balance.

    Args:
        tree: the tree's tensors (:class:`~recbole_rimirec.tree.tensors.TreeTensors`).

    Returns:
        list[dict]: one row per level, ``level``, ``nodes``, ``leaves``, ``items`` (items in this
        level's nodes), ``size_min``, ``size_median``, ``size_max``, ``balance``.
    """
    rows = []
    for level in range(1, tree.max_depth + 1):
        nodes = tree.level(level)
        sizes = tree.size[nodes].double()
        share = sizes / sizes.sum()
        entropy = float(-(share * share.clamp_min(1e-30).log()).sum())
        rows.append(
            {
                "level": level,
                "nodes": len(nodes),
                "leaves": int(tree.is_leaf[nodes].sum()),
                "items": int(sizes.sum()),
                "size_min": int(sizes.min()),
                "size_median": float(sizes.median()),
                "size_max": int(sizes.max()),
                "balance": entropy / np.log(len(nodes)) if len(nodes) > 1 else 1.0,
            }
        )
    return rows


def category_labels(dataset, field: str) -> np.ndarray:
    """One category per item from an item field (0 = none).

    A token-sequence field (Amazon's ``attributes``: brand and category ids together) gives each
    item the token of its own that is most common in the catalogue, its broadest category.

    Args:
        dataset: a built RecBole data set.
        field: a token or token-sequence item field.

    Returns:
        np.ndarray: [n_items] token ids.
    """
    ids = dataset.item_feat[field].numpy().reshape(len(dataset.item_feat), -1)  # [n_items, L]
    counts = np.bincount(ids.ravel(), minlength=int(ids.max()) + 1)
    counts[0] = 0
    best = np.take_along_axis(ids, counts[ids].argmax(1)[:, None], 1)[:, 0]
    return np.where(counts[best] > 0, best, 0)


def purity(tree, labels: np.ndarray, seed: int = 0) -> list[dict]:
    """NMI and ARI of each level's node assignment against item categories, and for a random tree.

    Args:
        tree: the tree's tensors.
        labels: [n_items] category per item (0 = none; those items are left out).
        seed: the random tree's seed.

    Returns:
        list[dict]: per level ``nmi``, ``ari``, ``random_nmi``, ``random_ari`` and ``items`` scored.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    codes = tree.codes.cpu().numpy()  # [n_items, D]
    perm = tree.perm.cpu().numpy()
    shuffled = np.empty_like(codes)  # the same node sizes, items dealt out at random
    shuffled[perm] = codes[np.random.default_rng(seed).permutation(perm)]
    rows = []
    for level in range(1, tree.max_depth + 1):
        node = codes[:, level - 1]
        keep = (node > 0) & (labels > 0)
        keep[0] = False
        rand = shuffled[:, level - 1]
        rows.append(
            {
                "level": level,
                "items": int(keep.sum()),
                "nmi": float(normalized_mutual_info_score(labels[keep], node[keep])),
                "ari": float(adjusted_rand_score(labels[keep], node[keep])),
                "random_nmi": float(normalized_mutual_info_score(labels[keep], rand[keep])),
                "random_ari": float(adjusted_rand_score(labels[keep], rand[keep])),
            }
        )
    return rows


@torch.no_grad()
def generator_accuracy(net, loader, train_dataset, bs=TOPS) -> dict:
    """Per tree level: is the held-out item's node among the generator's top B, against the B most popular?

    Args:
        net: a RimiRec model in eval mode.
        loader: an evaluation loader (one held-out item per user).
        train_dataset: the built train split (node popularity from its interactions).
        bs: the B values.

    Returns:
        dict: ``level_<l>`` -> nodes, users, ``generator@B`` and ``popular@B`` hit rates.
    """
    from recbole_rimirec.data.loaders import train_sequences

    tree = net.tree
    log_p, target = [], []
    for batch in loader:
        inter = batch[0]
        log_p.append(net.generator(net.forward(inter[net.ITEM_SEQ], inter[net.ITEM_SEQ_LEN])))
        target.append(inter[net.ITEM_ID])
    log_p, target = torch.cat(log_p), torch.cat(target)
    _, flat, _ = train_sequences(train_dataset)
    train_codes = tree.codes[torch.from_numpy(flat).to(tree.codes.device)]
    out = {}
    for level in range(1, tree.max_depth + 1):
        nodes = tree.level(level)
        counts = torch.bincount(train_codes[:, level - 1], minlength=tree.num_nodes)[nodes]
        node_of = tree.codes[target, level - 1]  # [U]; 0 when the path is shorter
        keep = node_of > 0
        node_of, lp = node_of[keep], log_p[keep][:, nodes]
        total = max(len(node_of), 1)
        row = {"nodes": len(nodes), "users": len(node_of)}
        for b in bs:
            top = nodes[lp.topk(min(b, len(nodes)), dim=1).indices]
            row[f"generator@{b}"] = (top == node_of[:, None]).any(1).sum().item() / total
        for b in bs:
            popular = nodes[counts.topk(min(b, len(nodes))).indices]
            row[f"popular@{b}"] = torch.isin(node_of, popular).sum().item() / total
        out[f"level_{level}"] = row
    return out


def plot_icicle(tree, prob: np.ndarray, path: str, title: str) -> None:
    """An icicle of the top two levels: width = node size, colour = P(node | user).

    Args:
        tree: the tree's tensors.
        prob: [N] one user's P(node | user).
        path: the PNG to write.
        title: the figure's title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    lo, hi = tree.lo.cpu().numpy(), tree.hi.cpu().numpy()
    total = int(tree.size[0])
    levels = [tree.level(d).cpu().numpy() for d in range(1, min(tree.max_depth, 2) + 1)]
    shown = np.concatenate(levels)
    norm = LogNorm(vmin=max(float(prob[shown].min()), 1e-6), vmax=max(float(prob[shown].max()), 1e-5))
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(11, 3.2))
    for depth, nodes in enumerate(levels, start=1):
        for node in nodes:
            ax.barh(
                -depth,
                (hi[node] - lo[node]) / total,
                left=lo[node] / total,
                height=0.9,
                color=cmap(norm(max(float(prob[node]), norm.vmin))),
                edgecolor="white",
                linewidth=0.3,
            )
        top = nodes[np.argsort(-prob[nodes])[:3]]
        for node in top:  # the user's three most probable nodes of the level, named where there is room
            if (hi[node] - lo[node]) / total < 0.025:
                continue
            ax.text((lo[node] + hi[node]) / 2 / total, -depth, str(int(node)), ha="center", va="center", fontsize=7)
    ax.set_yticks([-d for d in range(1, len(levels) + 1)], [f"level {d}" for d in range(1, len(levels) + 1)])
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the library (items in tree order); width = node size")
    ax.set_title(title, fontsize=10)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="P(node | user)", pad=0.01)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def tree_report(
    checkpoint: str, field: str | None = None, png: str | None = None, seed: int = 0, load_item_field: bool = False
) -> dict:
    """The whole report of a saved RimiRec run (see the module docstring).

    Args:
        checkpoint: a RimiRec checkpoint written by the plugin's trainer.
        field: the category field for purity; ``None`` = the first token field the run loaded.
        png: where to write the icicle picture (``None``: no picture).
        seed: picks the user whose P(node | user) colours the picture, and the random tree.
        load_item_field: read ``field`` from the data set's ``.item`` file even though the run did not load
            it (ml-100k's ``class``, say); the tree, the split and the weights stay the run's.

    Returns:
        dict: ``dataset``, ``shape``, ``purity`` (or ``None`` without a category field), ``field``,
        ``generator_accuracy`` (test split), ``picture_user`` and ``picture``.

    Raises:
        ConfigError: for another model's checkpoint or a field the run did not load.
    """
    from recbole_rimirec.explain import _rows_of, feature_fields
    from recbole_rimirec.quick_start import load_saved

    overrides = None
    if load_item_field and field:
        from recbole_rimirec.checkpoint import load_checkpoint

        columns = dict(load_checkpoint(checkpoint)["config"].get("load_col") or {})
        iid = load_checkpoint(checkpoint)["config"].get("ITEM_ID_FIELD", "item_id")
        columns["item"] = [iid, field]
        overrides = {"load_col": columns}
    saved = load_saved(checkpoint, overrides)
    net, config, dataset = saved["model"].eval(), saved["config"], saved["dataset"]
    if not hasattr(net, "candidates"):
        raise ConfigError(f"{checkpoint} is a {config['model']} run: tree-report reads RimiRec's tree")
    train, _, test = saved["splits"]
    fields = feature_fields(train._dataset)
    if field is not None and field not in fields:
        loaded = ", ".join(fields) or "none"
        raise ConfigError(f"--field {field}: not a token item field of this run (loaded: {loaded})")
    field = field or (fields[0] if fields else None)
    tree = net.tree
    report = {
        "checkpoint": checkpoint,
        "dataset": config["dataset"],
        "shape": level_shapes(tree),
        "field": field,
        "purity": purity(tree, category_labels(train._dataset, field), seed) if field else None,
        "generator_accuracy": generator_accuracy(net, test, train._dataset),
        "picture": None,
        "picture_user": None,
    }
    if png:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return report
        pool = np.unique(test.dataset.inter_feat[dataset.uid_field].numpy())
        uid = int(np.random.default_rng(seed).choice(pool))
        (row,) = _rows_of(test, dataset.uid_field, [uid])
        with torch.no_grad():
            prob = net.generator(net.forward(row[net.ITEM_SEQ], row[net.ITEM_SEQ_LEN]))[0].exp().cpu().numpy()
        user = str(dataset.id2token(dataset.uid_field, uid))
        title = f"{config['dataset']}: the tree's top two levels, coloured by user {user}'s P(node | user)"
        plot_icicle(tree, prob, png, title)
        report["picture"], report["picture_user"] = png, user
    return report


def render(report: dict) -> str:
    """The report as terminal text."""
    out = [f"item tree of a RimiRec run on {report['dataset']}"]
    for row in report["shape"]:
        out.append(
            f"  level {row['level']}: {row['nodes']} nodes ({row['leaves']} leaves), sizes {row['size_min']}"
            f" / {row['size_median']:g} / {row['size_max']} (min / median / max), balance {row['balance']:.2f}"
        )
    if report["purity"]:
        out.append(f"  purity against '{report['field']}' (a random tree of the same shape in brackets):")
        for row in report["purity"]:
            out.append(
                f"    level {row['level']}: NMI {row['nmi']:.3f} ({row['random_nmi']:.3f}), "
                f"ARI {row['ari']:.3f} ({row['random_ari']:.3f}) over {row['items']} items"
            )
    else:
        out.append("  purity: the run loaded no item category field")
    out.append("  held-out item's node among the user's top B nodes (the B most popular in brackets), test split:")
    for level, row in report["generator_accuracy"].items():
        shown = ", ".join(f"@{b} {row[f'generator@{b}']:.1%} ({row[f'popular@{b}']:.1%})" for b in TOPS)
        out.append(f"    {level.replace('_', ' ')} ({row['nodes']} nodes): {shown}")
    if report["picture"]:
        out.append(f"  picture: {report['picture']} (user {report['picture_user']})")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``recbole-rimirec tree-report``: user mistakes print one line and return 2.

    Args:
        argv: the arguments after ``tree-report``.

    Returns:
        int: the exit status.
    """
    parser = argparse.ArgumentParser(prog="recbole-rimirec tree-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a saved RimiRec run")
    parser.add_argument("--field", help="item category field for purity (default: the first token field loaded)")
    parser.add_argument(
        "--load_item_field", action="store_true", help="read --field from the .item file even if the run did not"
    )
    parser.add_argument("--out", help="write the report as JSON here; the picture goes beside it as .png")
    parser.add_argument("--seed", type=int, default=0, help="the pictured user and the random tree")
    options = parser.parse_args(argv)
    try:
        if not os.path.isfile(options.checkpoint):
            raise ConfigError(f"{options.checkpoint}: no such checkpoint")
        png = None
        if options.out:
            if not options.out.endswith(".json"):
                raise ConfigError(f"--out {options.out}: the report is written as .json")
            png = options.out[: -len(".json")] + ".png"
        report = tree_report(options.checkpoint, options.field, png, options.seed, options.load_item_field)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(render(report), end="")
    if options.out:
        with open(options.out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return 0
