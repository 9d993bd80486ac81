"""How well an item tree follows what users do next, before any model is trained.

For every test row (history -> held-out item) it measures, per tree level, how often the
held-out item lies in the same node as the last history item, and as any of the nodes of the
last five; beside the same rates for a random tree with the same node sizes (the items' codes
shuffled), the chance level. A tree whose nodes hold what users move between next gives the
generator something to predict and keeps the per-node libraries small. Compares the vector
sources of ``tree_vectors`` (co-occurrence, item features, both).

Run: python benchmarks/tree_quality.py --datasets ml-100k amazon-beauty --data_path <folder>
Writes ``benchmarks/results/tree_quality.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def same_node_rates(codes: np.ndarray, history: np.ndarray, length: np.ndarray, target: np.ndarray) -> dict:
    """Per level: P(target in the last item's node), P(target in a node of the last 5 items).

    Args:
        codes: [n_items, D] node ids per level (0 where an item's path is shorter).
        history: [R, L] left-aligned history ids.
        length: [R] history lengths.
        target: [R] held-out items.

    Returns:
        dict: ``last@<level>`` and ``last5@<level>`` rates, levels 1-based.
    """
    rows = np.arange(len(target))
    last = history[rows, length - 1]
    recent = np.stack([history[rows, np.maximum(length - 1 - j, 0)] for j in range(5)], axis=1)  # [R, 5]
    out = {}
    for level in range(codes.shape[1]):
        t = codes[target, level]
        valid = t > 0
        out[f"last@{level + 1}"] = float(((codes[last, level] == t) & valid).mean())
        out[f"last5@{level + 1}"] = float(((codes[recent, level] == t[:, None]).any(1) & valid).mean())
    return out


# Item columns to load for the feature vectors where the plugin's dataset file loads none.
ITEM_COLUMNS = {"ml-100k": {"inter": ["user_id", "item_id", "rating", "timestamp"], "item": ["item_id", "class"]}}


def measure(dataset: str, vectors: str, extra: dict) -> dict:
    from recbole_rimirec.config import Config
    from recbole_rimirec.data.preparation import create_dataset, data_preparation

    settings = {"state": "WARNING", "show_progress": False, "tree_vectors": vectors, **extra}
    if "features" in vectors and dataset in ITEM_COLUMNS:
        settings["load_col"] = ITEM_COLUMNS[dataset]
    config = Config("RimiRec", dataset, config_dict=settings)
    data = create_dataset(config)
    start = time.perf_counter()
    _, _, test = data_preparation(config, data)  # builds the tree from the train split
    seconds = time.perf_counter() - start
    tree = data.tree
    feat = test._dataset.inter_feat
    history = feat[data.item_id_list_field].numpy()
    length = feat[data.item_list_length_field].numpy()
    target = feat[data.iid_field].numpy()
    codes = tree.codes
    shuffled = codes.copy()
    shuffled[1:] = codes[1:][np.random.default_rng(0).permutation(len(codes) - 1)]
    sizes = np.bincount(tree.codes[1:, 0])[1:]
    return {
        "dataset": dataset,
        "vectors": vectors,
        "items": int(len(codes) - 1),
        "level1_nodes": int((sizes > 0).sum()),
        "leaves": int(len(np.unique(tree.leaf_of[1:]))),
        "split_and_tree_s": seconds,
        "tree": same_node_rates(codes, history, length, target),
        "random_tree": same_node_rates(shuffled, history, length, target),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["ml-100k"])
    parser.add_argument("--vectors", nargs="+", default=["cooccurrence", "features", "cooccurrence+features"])
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tree_quality.json"))
    args = parser.parse_args(argv)
    from recbole_rimirec.errors import ConfigError

    extra = {"data_path": args.data_path} if args.data_path else {}
    rows = []
    for dataset in args.datasets:
        for vectors in args.vectors:
            try:
                rows.append(measure(dataset, vectors, extra))
            except ConfigError as err:  # e.g. no item features loaded for this data set
                rows.append({"dataset": dataset, "vectors": vectors, "error": str(err)})
            print(json.dumps(rows[-1]), flush=True)
    Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
