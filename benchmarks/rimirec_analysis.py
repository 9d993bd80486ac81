"""RimiRec analysis from a saved run: where its NDCG goes, selection rule by selection rule.

The run's own data split and weights, test split, each setting scored in this process from the
rank of every user's held-out item in the list the model returns (the rank RecBole's metrics read:
a test checks the two agree):

* Decomposition.
  (a) ``ceiling``: every leaf, with the factorised score (``select_method: leaves`` over the whole
      library, exact normaliser): the model's own ranking of the whole library, the most any
      selection can keep;
  (b) ``global_head``: the encoder's plain full ranking, h . v;
  (c) ``selection``: the run's own setting (its ``select_method``, ``select_budget``, retrieval);
  (d) coverage: how often the selected nodes hold the held-out item, split by the user's history
      length and by the level of the node that holds it.
  Each with NDCG@10, Recall@10 and Recall@50, overall and by history length; (a)-(c) keep every
  user's rank (``ranks``), so two rows can be paired over users.
* Sweep: each selection rule (``frontier``, ``leaves``, ``density``) at each budget and the beam
  at each size: metrics, coverage, library fraction, nodes and milliseconds per user.
* Generator accuracy: is the held-out item's node at each level among the top B of that level by
  P(node | user), against the B most popular nodes (B = 1, 5, 10)?

Run: python benchmarks/rimirec_analysis.py <checkpoint.pth> --out <folder>/rimirec_analysis.json
(a PNG of NDCG@10 against the fraction of the library scored is written beside it). ``--split valid``
scores the validation split instead, to choose settings on; ``--alphas 0.5 1 2`` adds the weight of
log P(node | user) under the run's selection and over every leaf, for each of ``--scores``
(``mixed`` once per ``--betas`` value, the weight of the global head's h . v).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from time import perf_counter

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUDGETS = [0.02, 0.05, 0.1, 0.2]
BEAMS = [2, 5, 10]
HISTORY_BUCKETS = [(1, 2), (3, 5), (6, 10), (11, 20), (21, 10**9)]
K = 50  # the longest list any metric reads


def _say(line: str) -> None:
    print(line, flush=True)


def load(checkpoint: str, split: str = "test"):
    """A saved RimiRec run's model and evaluation data, rebuilt from its own settings.

    Args:
        checkpoint: a RimiRec checkpoint written by the plugin's trainer.
        split: ``test``, ``valid``, or ``all`` for a dict of the three loaders (``train`` too).

    Returns:
        (net, loader, train_dataset, config): the model in eval mode, the split's loader (or the dict),
        the built train split and the run's Config.
    """
    from recbole_rimirec.checkpoint import load_checkpoint
    from recbole_rimirec.config import Config
    from recbole_rimirec.data.preparation import create_dataset, data_preparation
    from recbole_rimirec.distributed import DIST_KEYS

    state = load_checkpoint(checkpoint)
    settings = {k: v for k, v in state["external_config"].items() if k not in ("model", "dataset", *DIST_KEYS)}
    settings.update({"state": "WARNING", "show_progress": False})
    config = Config(state["config"]["model"], state["config"]["dataset"], config_dict=settings)
    train, valid, test = data_preparation(config, create_dataset(config))
    net = config.model_class(config, train._dataset)
    net.load_state_dict(state["state_dict"])
    net.eval()
    loaders = {"train": train, "test": test, "valid": valid}
    return net, (loaders if split == "all" else loaders[split]), train._dataset, config


def header(checkpoint: str, config, split: str) -> dict:
    """What a sweep over one checkpoint records first: which checkpoint, data set, seed and split.

    Args:
        checkpoint: the checkpoint's path (recorded relative to the repository when inside it).
        config: its Config, from ``load``.
        split: ``valid`` or ``test``.

    Returns:
        dict: ``checkpoint``, ``dataset``, ``seed``, ``split``.
    """
    from run import portable

    return {"checkpoint": portable(checkpoint), "dataset": config["dataset"], "seed": config["seed"], "split": split}


class GlobalHeadSelector(torch.nn.Module):
    """Stands in for the generator: P(node | user) = the mass the global head's softmax puts on the node.

    Scores every item, so it is no serving rule: it bounds what a generator taught by the global head
    (``generator_distill_weight``) could select.
    """

    def __init__(self, net):
        super().__init__()
        object.__setattr__(self, "_net", net)  # not a submodule: the model holds this selector

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        from recbole_rimirec.model.generator import node_mass_log_probs

        net = self._net
        return node_mass_log_probs((h @ net.item_embedding.weight.T).softmax(1), net.tree)


class CentroidSelector(torch.nn.Module):
    """Stands in for the generator: P(leaf | user) = softmax over leaves of h . centroid + log |leaf|.

    The first-order estimate of the global head's log mass on a leaf, log sum_i exp(h . v_i), from the
    mean of the leaf's item vectors: one matrix product over the leaves, as cheap as the generator
    (an IVF coarse quantiser's rule). Internal nodes hold their leaves' sum.
    """

    def __init__(self, net):
        super().__init__()
        object.__setattr__(self, "_net", net)
        tree, weight = net.tree, net.item_embedding.weight.detach()
        sums = torch.zeros(tree.num_nodes, weight.shape[1]).index_add_(0, tree.leaf[1:], weight[1:])
        counts = torch.bincount(tree.leaf[1:], minlength=tree.num_nodes).clamp(min=1)
        self.leaves = tree.is_leaf.nonzero().squeeze(1)  # [n_leaves]
        self.centroids = (sums / counts[:, None])[self.leaves]  # [n_leaves, H]
        self.log_size = counts[self.leaves].float().log()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        from recbole_rimirec.model.generator import leaf_mass_log_probs

        net = self._net
        probs = (h @ self.centroids.T + self.log_size).softmax(1)  # [P, n_leaves]
        mass = torch.zeros(len(h), net.tree.num_nodes, dtype=probs.dtype)
        mass[:, self.leaves] = probs
        return leaf_mass_log_probs(mass, net.tree)


@contextmanager
def setting(net, **changes):
    """Changes the model's retrieval attributes for a block, then puts them back.

    Args:
        net: a RimiRec model.
        **changes: ``selection``, ``budget``, ``max_nodes``, ``beam_size``, ``backend``, ``score``, ``alpha``,
            ``global_score_weight``.
    """
    old = {key: getattr(net, key) for key in changes}
    for key, value in changes.items():
        setattr(net, key, value)
    net.build_index()
    try:
        yield net
    finally:
        for key, value in old.items():
            setattr(net, key, value)
        net.build_index()


@torch.no_grad()
def score_users(net, test, global_head: bool = False) -> dict:
    """Every test user's rank of the held-out item under the model's current setting.

    Args:
        net: a RimiRec model (its selection, budget and backend as set).
        test: the test loader.
        global_head: rank the whole library by h . v instead of retrieving.

    Returns:
        dict of per-user arrays: ``rank`` (0-based, -1 when not in the top ``K``), ``history``
        (history length), ``level`` (depth of the selected node holding the target, 0 when none)
        and ``nodes``, ``items`` (nodes searched, items they hold); and ``seconds`` in total.
    """
    ranks, history, level, nodes, items, seconds = [], [], [], [], [], 0.0
    tree = net.tree
    for batch in test:
        inter = batch[0]
        target = inter[net.ITEM_ID]  # read only to score, never by the model
        start = perf_counter()
        if global_head:
            scores = net.full_sort_predict(inter)
            scores[:, 0] = float("-inf")
            rank = (scores > scores.gather(1, target[:, None])).sum(1)
            rank = torch.where(rank < K, rank, -1)
            n_nodes, n_items = torch.ones_like(rank), torch.full_like(rank, int(tree.size[0]))
            holder = torch.zeros_like(rank)
        else:
            _, ids, n_nodes, n_items = net.retrieve(inter, K)
            hit = ids == target[:, None]  # [B, K]
            rank = torch.where(hit.any(1), hit.float().argmax(1), -1)
            h = net.forward(inter[net.ITEM_SEQ], inter[net.ITEM_SEQ_LEN])
            if net.split is not None:  # sub-clusters: the target's own sub-cluster chosen, at its leaf's depth
                chosen = net.select_subclusters(net.generator(h), h)  # [B, C]
                cluster = net.split.cluster[target]  # [B]
                inside_one = chosen.gather(1, cluster[:, None]).squeeze(1)
                holder = torch.where(inside_one, tree.depth[net.split.leaf[cluster]], 0)
            else:
                selected = net.select_nodes(net.generator(h))  # [B, N]
                pos = tree.pos[target][:, None]
                inside = selected & (pos >= tree.lo[None, :]) & (pos < tree.hi[None, :])  # [B, N]
                holder = torch.where(inside.any(1), tree.depth[inside.float().argmax(1)], 0)
        seconds += perf_counter() - start
        ranks.append(rank)
        history.append(inter[net.ITEM_SEQ_LEN])
        level.append(holder)
        nodes.append(n_nodes)
        items.append(n_items)
    cat = {k: torch.cat(v).cpu().numpy() for k, v in dict(rank=ranks, history=history, level=level).items()}
    cat.update(nodes=torch.cat(nodes).cpu().numpy(), items=torch.cat(items).cpu().numpy(), seconds=seconds)
    return cat


def metrics(rank: np.ndarray) -> dict:
    """NDCG@10, Recall@10 and Recall@50 of one held-out item per user.

    Args:
        rank: [U] 0-based ranks, -1 for a miss.

    Returns:
        dict: the three means.
    """
    hit10 = (rank >= 0) & (rank < 10)
    ndcg = np.where(hit10, 1.0 / np.log2(np.where(hit10, rank, 0) + 2.0), 0.0)
    return {"ndcg@10": float(ndcg.mean()), "recall@10": float(hit10.mean()), "recall@50": float((rank >= 0).mean())}


def summary(scored: dict, n_items: int, global_head: bool = False) -> dict:
    """Metrics, coverage and cost of one setting, overall and by history length.

    Args:
        scored: :func:`score_users`'s output.
        n_items: the library size.
        global_head: the setting ranks the whole library (coverage is 1).

    Returns:
        dict: metrics, ``coverage``, ``library_fraction``, ``nodes_per_user``, ``ms_per_user``,
        ``by_history`` (per bucket: users, metrics, coverage) and ``covered_at_level`` (share of users
        whose held-out item lies in a selected node of that level).
    """
    covered = np.ones(len(scored["rank"]), bool) if global_head else scored["level"] > 0
    out = {"users": len(covered), **metrics(scored["rank"]), "coverage": float(covered.mean())}
    out.update(
        library_fraction=float(scored["items"].mean() / n_items),
        nodes_per_user=float(scored["nodes"].mean()),
        ms_per_user=1000.0 * scored["seconds"] / max(len(scored["rank"]), 1),
    )
    out["by_history"] = {}
    for lo, hi in HISTORY_BUCKETS:
        keep = (scored["history"] >= lo) & (scored["history"] <= hi)
        if keep.any():
            name = f"{lo}-{hi}" if hi < 10**9 else f"{lo}+"
            row = {"users": int(keep.sum()), **metrics(scored["rank"][keep]), "coverage": float(covered[keep].mean())}
            out["by_history"][name] = row
    if not global_head:
        levels = sorted(set(scored["level"].tolist()) - {0})
        out["covered_at_level"] = {str(lv): float((scored["level"] == lv).mean()) for lv in levels}
    return out


def analyse(
    checkpoint: str,
    budgets=BUDGETS,
    beams=BEAMS,
    alphas=(),
    scores=None,
    split="test",
    progress=_say,
    betas=None,
    scopes=("ceiling", "selection", "leaves", "density"),
    decompose: bool = True,
) -> dict:
    """The whole analysis of one saved run (see the module docstring).

    Args:
        checkpoint: a RimiRec checkpoint.
        budgets: library fractions for the sweep.
        beams: beam sizes for the sweep.
        alphas: weights of log P(node | user) to try, each with every score of ``scores``, over every
            leaf, under the run's own selection and under both leaf rules at the run's budget.
        scores: ``retrieval_score`` values for the alpha sweep (``factorized``, ``prior``, ``global``,
            ``mixed``); ``None``: the run's own.
        split: ``test``, or ``valid`` to choose settings on.
        progress: called with each finished row.
        betas: ``global_score_weight`` values, each tried with ``mixed``; ``None``: the run's own.
        scopes: where the alpha sweep scores: ``ceiling`` (every leaf), ``selection`` (the run's own),
            ``leaves``, ``density``, ``frontier`` (the rules at the run's budget); ``<rule>@N`` caps the
            nodes per user at N instead of the run's ``select_max_nodes``; a ``+teacher`` suffix selects
            by the global head's mass per node instead of the generator (a bound, not a serving rule),
            ``+centroid`` by its first-order estimate from the leaves' mean item vectors.
        decompose: run the decomposition, the sweep and the generator accuracy (else the alpha
            sweep alone, to choose a merge on quickly).

    Returns:
        dict: ``decomposition``, ``sweep``, ``alpha_sweep``, ``generator_accuracy`` and what the run was.
    """
    from recbole_rimirec.tree_report import generator_accuracy

    net, test, train_dataset, config = load(checkpoint, split)
    n_items = int(net.tree.size[0])
    own = {"select_method": net.selection, "select_budget": net.budget, "retrieval": net.backend}

    def row(global_head=False, keep_ranks=False, **changes):
        with setting(net, **changes):
            scored = score_users(net, test, global_head)
            found = summary(scored, n_items, global_head)
        if keep_ranks:  # per user, for paired intervals between the decomposition's rows (benchmarks/tables.py)
            found["ranks"] = scored["rank"].tolist()
        progress(
            json.dumps({**changes, **{k: found[k] for k in ("ndcg@10", "coverage", "library_fraction")}}, default=str)
        )
        return found

    everything = {"selection": "leaves", "budget": 1.0, "max_nodes": net.tree.num_nodes, "backend": "exact"}
    if not decompose:
        budgets, beams = [], []
    decomposition = (
        {"global_head": row(global_head=True)}
        if not decompose
        else {
            "ceiling": row(keep_ranks=True, **everything),
            "global_head": row(global_head=True, keep_ranks=True),
            "selection": row(keep_ranks=True),
            "selection_exact": row(backend="exact"),
        }
    )
    if decompose:
        ceiling, chosen = decomposition["ceiling"]["ndcg@10"], decomposition["selection_exact"]["ndcg@10"]
        decomposition["selection_cost"] = 1.0 - chosen / ceiling if ceiling else None  # share of the ceiling lost
    sweep = []
    for method in ("frontier", "leaves", "density"):
        for budget in budgets:
            found = row(selection=method, budget=budget)
            sweep.append({"select_method": method, "select_budget": budget, "retrieval": net.backend, **found})
    for beam in beams:
        found = row(selection="beam", beam_size=beam)
        sweep.append({"select_method": "beam", "beam_size": beam, "retrieval": net.backend, **found})
    alpha_sweep = []
    rules = {
        "ceiling": everything,
        "selection": {},
        "leaves": {"selection": "leaves"},
        "density": {"selection": "density"},
        "frontier": {"selection": "frontier"},
    }
    chosen_scopes = {}
    for name in scopes:  # "<rule>" or "<rule>@<max nodes>", "+teacher": nodes selected by the global head's mass
        base, _, selector = name.partition("+")
        rule, _, cap = base.partition("@")
        chosen_scopes[name] = {**rules[rule], **({"max_nodes": int(cap)} if cap else {})}
        if selector:
            chosen_scopes[name]["generator"] = {"teacher": GlobalHeadSelector, "centroid": CentroidSelector}[selector](
                net
            )
    scopes = chosen_scopes
    for score in scores or [net.score]:
        for beta in (betas or [net.global_score_weight]) if score == "mixed" else [net.global_score_weight]:
            for alpha in alphas:
                for scope, changes in scopes.items():
                    found = row(alpha=alpha, score=score, global_score_weight=beta, **changes)
                    alpha_sweep.append(
                        {"retrieval_score": score, "alpha": alpha, "global_score_weight": beta, "scope": scope, **found}
                    )
    return {
        "checkpoint": checkpoint,
        "dataset": config["dataset"],
        "seed": config["seed"],
        "split": split,
        "users": decomposition["global_head"]["users"],
        "run_setting": own,
        "decomposition": decomposition,
        "sweep": sweep,
        "alpha_sweep": alpha_sweep,
        "generator_accuracy": generator_accuracy(net, test, train_dataset) if decompose else None,
    }


def plot(result: dict, out: Path) -> None:
    """NDCG@10 against the fraction of the library scored, one line per selection rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method in ("frontier", "leaves", "density", "beam"):
        rows = [r for r in result["sweep"] if r["select_method"] == method]
        if rows:
            ax.plot([r["library_fraction"] for r in rows], [r["ndcg@10"] for r in rows], marker="o", label=method)
    parts = result["decomposition"]
    ax.axhline(parts["ceiling"]["ndcg@10"], color="black", linestyle="--", label="every leaf, factorised (ceiling)")
    ax.axhline(parts["global_head"]["ndcg@10"], color="gray", linestyle=":", label="global head, whole library")
    ax.set_xscale("log")
    ax.set_xlabel("fraction of the library scored per user")
    ax.set_ylabel(f"{result['split']} NDCG@10")
    ax.set_title("RimiRec: NDCG@10 against the library scored")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def compact_ranks(text: str) -> str:
    """An indented JSON text with every ``ranks`` list on one line (a user per line would triple the file).

    Args:
        text: ``json.dumps(..., indent=2)`` output.

    Returns:
        str: the same JSON value.
    """
    return re.sub(r'"ranks": \[([-\d,\s]*)\]', lambda m: '"ranks": ' + json.dumps(json.loads(f"[{m.group(1)}]")), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--out", required=True)
    parser.add_argument("--budgets", nargs="*", type=float, default=BUDGETS)
    parser.add_argument("--beams", nargs="*", type=int, default=BEAMS)
    parser.add_argument("--alphas", nargs="*", type=float, default=[], help="weights of log P(node | user) to try")
    parser.add_argument("--scores", nargs="+", default=None, help="retrieval_score values for --alphas (the run's)")
    parser.add_argument(
        "--betas", nargs="*", type=float, default=None, help="global_score_weight values for mixed (the run's)"
    )
    parser.add_argument("--scopes", nargs="+", default=["ceiling", "selection", "leaves", "density"])
    parser.add_argument("--alpha-sweep-only", action="store_true", help="skip the decomposition and the sweep")
    parser.add_argument("--split", choices=["test", "valid"], default="test", help="valid: to choose settings on")
    args = parser.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        print(f"error: checkpoint not found: {args.checkpoint}", file=sys.stderr)
        return 2
    out = Path(args.out)
    result = analyse(
        args.checkpoint,
        args.budgets,
        args.beams,
        args.alphas,
        args.scores,
        args.split,
        betas=args.betas,
        scopes=args.scopes,
        decompose=not args.alpha_sweep_only,
    )
    from run import portable

    result["checkpoint"] = portable(str(Path(args.checkpoint).resolve()))
    out.write_text(compact_ranks(json.dumps(result, indent=2)) + "\n")
    try:
        if result["sweep"]:
            plot(result, out.with_suffix(".png"))
    except ImportError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
