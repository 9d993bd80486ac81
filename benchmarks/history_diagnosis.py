"""Why the multi-interest baselines trail: how much of each model's top 10 the user already has.

RecBole's full ranking of sequential models does not remove a user's history (repeat
consumption is allowed), while in ml-100k and the Amazon sets the held-out item is almost
never one the user had before. A model whose interests are averages of history items scores
those items highly and spends top-10 slots on them. For every saved run of a results folder
this script re-scores the test split with the run's own evaluation (RimiRec and the ANN
baselines through their retrieval hook) and reports:

* ``history_at_10``: mean fraction of the top 10 that are items of the user's history;
* ``target_in_history``: fraction of test targets that are history items (the ceiling of
  what repeating history can earn);
* NDCG@10 and Hit@10 as evaluated (RecBole already removes the train history of general models
  such as Pop, never of sequential ones), and again with history items removed from every model's
  ranking (a diagnostic protocol, applied to every model alike; the headline table keeps
  RecBole's).

Run: python benchmarks/history_diagnosis.py benchmarks/results/ml-100k-cpu [--seeds 2020]
Writes ``<folder>/history_diagnosis.json`` and ``history_diagnosis.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def user_histories(dataset) -> tuple[np.ndarray, np.ndarray]:
    """Every user's items except the last one (the test target), as CSR arrays.

    Args:
        dataset: the full dataset before the split (time-ordered interactions).

    Returns:
        (offsets, items): the history of user ``u`` is ``items[offsets[u]:offsets[u + 1]]``.
    """
    uid = dataset.inter_feat[dataset.uid_field].numpy()
    iid = dataset.inter_feat[dataset.iid_field].numpy()
    when = dataset.inter_feat[dataset.time_field].numpy() if dataset.time_field else np.arange(len(uid))
    order = np.lexsort((np.arange(len(uid)), when, uid))  # by user, then time (then file order)
    uid, iid = uid[order], iid[order]
    last = np.r_[uid[1:] != uid[:-1], True]  # each user's last interaction is the test target
    keep = ~last
    counts = np.bincount(uid[keep], minlength=dataset.user_num)
    return np.r_[0, np.cumsum(counts)], iid[keep]


def ndcg_hit_at_10(scores: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per user NDCG@10 and Hit@10 of one target; items tied with it rank before it."""
    target_score = scores.gather(1, target[:, None])  # [B, 1]
    rank = (scores >= target_score).sum(1) - 1  # [B] 0-based
    hit = (rank < 10) & torch.isfinite(target_score[:, 0])
    ndcg = torch.where(hit, 1.0 / torch.log2(rank.float() + 2), torch.zeros_like(rank, dtype=torch.float))
    return ndcg.numpy(), hit.float().numpy()


@torch.no_grad()
def diagnose(checkpoint: str) -> dict:
    from recbole.utils import init_seed

    from recbole_rimirec.checkpoint import load_checkpoint
    from recbole_rimirec.config import Config
    from recbole_rimirec.data.preparation import create_dataset, data_preparation
    from recbole_rimirec.distributed import DIST_KEYS
    from recbole_rimirec.utils import get_trainer

    state = load_checkpoint(checkpoint)
    settings = {k: v for k, v in state.get("external_config", {}).items() if k not in DIST_KEYS}
    settings.update({"state": "WARNING", "show_progress": False})
    settings.pop("model", None)
    settings.pop("dataset", None)
    config = Config(state["config"]["model"], state["config"]["dataset"], config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    data = create_dataset(config)
    train, _, test = data_preparation(config, data)
    net = config.model_class(config, train._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"], config.model_class)(config, net)
    trainer.load_best(checkpoint)
    net.eval()
    trainer.tot_item_num = test._dataset.item_num  # what RecBole's evaluate() sets before scoring
    if hasattr(net, "build_index") and getattr(trainer, "use_retrieval", False):
        net.build_index()
    offsets, items = user_histories(data)
    rows = {"history_at_10": [], "target_in_history": [], "ndcg": [], "hit": [], "ndcg_masked": [], "hit_masked": []}
    for batch in test:
        interaction, scores, positive_u, positive_i = trainer._full_sort_batch_eval(batch)
        assert torch.equal(positive_u.cpu(), torch.arange(len(scores))), "one test item per user expected"
        scores = scores.float().cpu().clone()
        users = interaction[config["USER_ID_FIELD"]].cpu().numpy()
        target = positive_i.cpu()
        history = torch.zeros_like(scores, dtype=torch.bool)  # [B, n_items]
        for b, u in enumerate(users):
            history[b, torch.from_numpy(items[offsets[u] : offsets[u + 1]])] = True
        top = scores.topk(10, dim=1).indices
        rows["history_at_10"].append(history.gather(1, top).float().mean(1).numpy())
        rows["target_in_history"].append(history.gather(1, target[:, None])[:, 0].float().numpy())
        ndcg, hit = ndcg_hit_at_10(scores, target)
        rows["ndcg"].append(ndcg)
        rows["hit"].append(hit)
        masked = scores.masked_fill(history & (torch.arange(scores.size(1))[None, :] != target[:, None]), -np.inf)
        ndcg, hit = ndcg_hit_at_10(masked, target)
        rows["ndcg_masked"].append(ndcg)
        rows["hit_masked"].append(hit)
    return {k: float(np.concatenate(v).mean()) for k, v in rows.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020])
    args = parser.parse_args(argv)
    from ann_eval import checkpoint_of

    folder = Path(args.folder)
    if not (folder / "runs").is_dir():
        print(f"error: {folder} is not a benchmark folder (no runs/ in it)", file=sys.stderr)
        return 2
    out = []
    for path in sorted((folder / "runs").glob("*.json")):
        run = json.loads(path.read_text())
        checkpoint = checkpoint_of(run)
        if run["seed"] not in args.seeds or checkpoint is None:
            continue
        row = {"model": run["model"], "dataset": run["dataset"], "seed": run["seed"], **diagnose(str(checkpoint))}
        row["run_ndcg@10"] = run["test_result"]["ndcg@10"]
        out.append(row)
        print(json.dumps(row), flush=True)
    (folder / "history_diagnosis.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "| model | seed | top-10 from history | targets in history | NDCG@10 | Hit@10 | NDCG@10, history removed "
        "| Hit@10, history removed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(out, key=lambda r: -r["ndcg_masked"]):
        lines.append(
            f"| {r['model']} | {r['seed']} | {r['history_at_10']:.1%} | {r['target_in_history']:.1%} | {r['ndcg']:.4f} "
            f"| {r['hit']:.4f} | {r['ndcg_masked']:.4f} | {r['hit_masked']:.4f} |"
        )
    (folder / "history_diagnosis.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
