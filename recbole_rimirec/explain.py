"""Show a user's interests: the circles and sub-circles RimiRec selects for a user, and why.

Reference: H. Pei et al., RimiRec. Stage 1 gives P(node | user) over the item tree and selects a
few nodes (circles at several levels); stage 2 searches each with a node-specific user embedding
and merges the results. ``explain`` shows both stages for one user of a saved run's test split:

* the user's recent history, with each item's feature tokens where the data set has them;
* the most probable nodes at every level, with P(node | user), size and whether they were searched;
* every searched node with its dominant feature tokens and its best items under the merged score,
  marking those that reached the final top 10.

``recbole-rimirec explain CHECKPOINT (--user TOKEN [TOKEN ...] | --sample N) [--json]``
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

import numpy as np
import torch

from recbole_rimirec.errors import ConfigError

HISTORY_SHOWN = 10  # most recent history items shown
LEVEL_TOP = 3  # nodes shown per level


def feature_fields(dataset) -> list[str]:
    """The item fields that hold tokens (categories, brands), other than the id and the tree code.

    Args:
        dataset: a built RecBole data set (its ``item_feat`` holds tensors).

    Returns:
        list[str]: field names, in the data set's order.
    """
    from recbole.utils import FeatureType

    from recbole_rimirec.data.tree_dataset import CODE_FIELD

    if dataset.item_feat is None:
        return []
    skip = {dataset.iid_field, CODE_FIELD}
    kinds = (FeatureType.TOKEN, FeatureType.TOKEN_SEQ)
    return [f for f in dataset.item_feat.columns if f not in skip and dataset.field2type.get(f) in kinds]


def item_tokens(dataset, field: str, items: np.ndarray) -> list[list[str]]:
    """Each item's tokens in one feature field.

    Args:
        dataset: a built RecBole data set.
        field: a token or token-sequence item field.
        items: [n] item ids.

    Returns:
        list[list[str]]: per item, its tokens (padding dropped).
    """
    ids = dataset.item_feat[field][torch.as_tensor(items, dtype=torch.long)].numpy()
    ids = ids.reshape(len(items), -1)  # [n, 1] for a token field, [n, L] for a sequence
    return [[str(t) for t in dataset.id2token(field, row[row > 0])] for row in ids]


def top_tokens(dataset, field: str, items: np.ndarray, n: int = 3) -> list[dict]:
    """The tokens most items of a set carry in one field.

    Args:
        dataset: a built RecBole data set.
        field: a token or token-sequence item field.
        items: [m] item ids.
        n: tokens returned.

    Returns:
        list[dict]: ``token`` and ``share`` (the fraction of the items that carry it), most common first.
    """
    counts = Counter(t for tokens in item_tokens(dataset, field, items) for t in set(tokens))
    return [{"token": t, "share": c / max(len(items), 1)} for t, c in counts.most_common(n)]


def _rows_of(test_loader, uid_field: str, users: list[int]):
    """The test-split rows (history fields) of the given users, in the order asked."""
    wanted, found = set(users), {}
    for batch in test_loader:
        inter = batch[0]
        for pos, uid in enumerate(inter[uid_field].tolist()):
            if uid in wanted and uid not in found:
                found[uid] = inter[torch.tensor([pos])]
        if len(found) == len(wanted):
            break
    return [found[u] for u in users if u in found]


def explain_user(net, dataset, row, top: int = 10, per_node: int = 5) -> dict:
    """One user's selected nodes and retrieved items, as plain data.

    Args:
        net: a RimiRec model in eval mode, its index built.
        dataset: the built train split (item features and token maps).
        row: the user's test-split row (an Interaction of one row).
        top: length of the final list.
        per_node: items shown per searched node.

    Returns:
        dict: ``user``, ``history`` (most recent last), ``history_length``, ``levels`` (the most probable
        nodes per level), ``nodes`` (the searched nodes, most probable first), ``top`` (the final list)
        and ``library_fraction``.
    """
    from recbole_rimirec.retrieval.merge import group_by_user, merge_topk

    tree = net.tree
    fields = feature_fields(dataset)
    found = net.candidates(row, max(top, per_node))
    log_p, selected = found["log_p"][0], found["selected"][0]  # [N]
    merged_s, merged_i = merge_topk(*group_by_user(found["user"], found["scores"], found["ids"], 1), top)
    final = [(int(i), float(s)) for i, s in zip(merged_i[0].tolist(), merged_s[0].tolist(), strict=True) if i > 0]
    final_ids = {i for i, _ in final}
    leaf = tree.leaf.cpu().numpy()
    lo, hi, depth, parent = (t.cpu().numpy() for t in (tree.lo, tree.hi, tree.depth, tree.parent))
    prob = log_p.exp().cpu().numpy()
    chosen = selected.cpu().numpy()
    perm = tree.perm.cpu().numpy()

    def path(node: int) -> list[int]:
        out = []
        while node > 0:
            out.append(node)
            node = int(parent[node])
        return out[::-1]

    def searched_by(node: int) -> bool:  # the node or one of its ancestors was searched
        return any(chosen[n] for n in path(node))

    length = int(row[net.ITEM_SEQ_LEN][0])
    history = row[net.ITEM_SEQ][0, :length].cpu().numpy()[-HISTORY_SHOWN:]
    tokens = {f: item_tokens(dataset, f, history) for f in fields}
    node_of_item = {}
    nodes = []
    for pair in range(len(found["node"])):
        node = int(found["node"][pair])
        ids, scores = found["ids"][pair].tolist(), found["scores"][pair].tolist()
        items = [(i, s) for i, s in zip(ids, scores, strict=True) if i > 0]
        for i, _ in items:
            node_of_item[i] = node
        members = perm[lo[node] : hi[node]]
        nodes.append(
            {
                "id": node,
                "level": int(depth[node]),
                "path": path(node),
                "prob": float(prob[node]),
                "size": int(hi[node] - lo[node]),
                "features": {f: top_tokens(dataset, f, members) for f in fields},
                "items": [
                    {"item": _token(dataset, i), "score": s, "in_top": i in final_ids} for i, s in items[:per_node]
                ],
            }
        )
    nodes.sort(key=lambda n: -n["prob"])
    levels = {}
    for level in range(1, tree.max_depth + 1):
        at = tree.level(level).cpu().numpy()
        best = at[np.argsort(-prob[at], kind="stable")[:LEVEL_TOP]]
        inside = {a for node in nodes for a in node["path"][:-1]}  # nodes with a searched descendant
        levels[str(level)] = [
            {
                "id": int(n),
                "prob": float(prob[n]),
                "size": int(hi[n] - lo[n]),
                "searched": searched_by(int(n)),
                "partly": int(n) in inside,
            }
            for n in best
        ]
    return {
        "user": str(dataset.id2token(dataset.uid_field, int(row[dataset.uid_field][0]))),
        "history_length": length,
        "history": [
            {"item": _token(dataset, int(i)), "node": int(leaf[i]), "features": {f: tokens[f][k] for f in fields}}
            for k, i in enumerate(history)
        ],
        "levels": levels,
        "nodes": nodes,
        "top": [{"item": _token(dataset, i), "score": s, "node": node_of_item.get(i, 0)} for i, s in final],
        "library_fraction": float(sum(n["size"] for n in nodes) / max(int(tree.size[0]), 1)),
    }


def _token(dataset, item: int) -> str:
    return str(dataset.id2token(dataset.iid_field, item))


def explain(
    checkpoint: str, users: list[str] | None = None, sample: int | None = None, top: int = 10, per_node: int = 5
) -> list[dict]:
    """Explains users of a saved RimiRec run's test split.

    Args:
        checkpoint: a RimiRec checkpoint written by the plugin's trainer.
        users: raw user tokens.
        sample: instead of ``users``, this many test users drawn with the run's seed.
        top: length of the final list.
        per_node: items shown per searched node.

    Returns:
        list[dict]: one :func:`explain_user` record per user.

    Raises:
        ConfigError: for a checkpoint of another model, or a user token the data set does not have.
    """
    from recbole_rimirec.quick_start import load_saved

    saved = load_saved(checkpoint)
    net, config = saved["model"], saved["config"]
    if not hasattr(net, "candidates"):
        raise ConfigError(f"{checkpoint} is a {config['model']} run: explain shows RimiRec's nodes")
    dataset = saved["dataset"]
    train, _, test = saved["splits"]
    uid_field = dataset.uid_field
    if users:
        ids = []
        for token in users:
            try:
                ids.append(int(dataset.token2id(uid_field, token)))
            except ValueError:
                raise ConfigError(f"user '{token}' is not in data set {config['dataset']}") from None
    else:
        pool = np.unique(test.dataset.inter_feat[uid_field].numpy())
        rng = np.random.default_rng(config["seed"])
        ids = rng.choice(pool, size=min(sample or 1, len(pool)), replace=False).tolist()
    net.eval()
    net.build_index()
    rows = _rows_of(test, uid_field, ids)
    if len(rows) < len(ids):
        raise ConfigError("some users asked for have no test row (every user of the data set has one)")
    return [explain_user(net, train._dataset, row.to(config["device"]), top, per_node) for row in rows]


def _features(features: dict, width: int = 3) -> str:
    parts = []
    for field, tokens in features.items():
        if tokens and isinstance(tokens[0], dict):
            shown = ", ".join(f"{t['token']} {t['share']:.0%}" for t in tokens[:width])
        else:
            shown = ", ".join(tokens[:width])
        if shown:
            parts.append(f"{field}: {shown}")
    return "; ".join(parts)


def render(record: dict) -> str:
    """One explained user as a readable terminal text.

    Args:
        record: an :func:`explain_user` record.

    Returns:
        str: the text, lines ending in newlines.
    """
    out = [f"user {record['user']}: {record['history_length']} items of history"]
    out.append("  recent history (oldest first):")
    for item in record["history"]:
        extra = _features(item["features"])
        out.append(f"    {item['item']:>10}  leaf {item['node']:<5} {extra}")
    out.append("  most probable nodes per level (* searched whole, + partly: some of its sub-circles):")
    for level, nodes in record["levels"].items():
        mark = lambda n: "*" if n["searched"] else "+" if n["partly"] else " "  # noqa: E731
        shown = "   ".join(f"{mark(n)}node {n['id']} P={n['prob']:.3f} ({n['size']} items)" for n in nodes)
        out.append(f"    level {level}: {shown}")
    out.append(f"  searched nodes ({record['library_fraction']:.1%} of the library), most probable first:")
    for node in record["nodes"]:
        path = " > ".join(str(n) for n in node["path"])
        out.append(
            f"    node {node['id']} (level {node['level']}, path {path}): P={node['prob']:.3f}, {node['size']} items"
        )
        if node["features"]:
            out.append(f"      holds  {_features(node['features'])}")
        items = ", ".join(f"{i['item']}{'*' if i['in_top'] else ''} {i['score']:.2f}" for i in node["items"])
        out.append(f"      best   {items}")
    out.append(
        "  final list (item, merged score, node): "
        + ", ".join(f"{t['item']} {t['score']:.2f} n{t['node']}" for t in record["top"])
    )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``recbole-rimirec explain``: user mistakes print one line and return 2.

    Args:
        argv: the arguments after ``explain``.

    Returns:
        int: the exit status.
    """
    parser = argparse.ArgumentParser(prog="recbole-rimirec explain", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a saved RimiRec run")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", nargs="+", metavar="TOKEN", help="raw user tokens")
    who.add_argument("--sample", type=int, metavar="N", help="N test users drawn with the run's seed")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--top", type=int, default=10, help="length of the final list (default 10)")
    parser.add_argument("--per_node", type=int, default=5, help="items shown per searched node (default 5)")
    options = parser.parse_args(argv)
    import os

    try:
        if not os.path.isfile(options.checkpoint):
            raise ConfigError(f"{options.checkpoint}: no such checkpoint")
        if options.sample is not None and options.sample < 1:
            raise ConfigError(f"--sample must be at least 1, not {options.sample}")
        records = explain(options.checkpoint, options.user, options.sample, options.top, options.per_node)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if options.json:
        print(json.dumps({"users": records}, indent=2))
    else:
        print("\n".join(render(r) for r in records), end="")
    return 0
