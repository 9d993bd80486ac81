"""Training-step cost of the all-positions path with and without packing, in one process.

Builds the data once, then times the same number of optimizer steps (forward, backward, Adam) on
the first batches of an epoch for each setting, alternating the settings over several rounds so
machine noise hits both alike. Reports seconds per step, per target and the extrapolated epoch.

Run: python benchmarks/pack_speed.py --dataset amazon-beauty --data_path /path/to/data \
    --model SASRecAllPos --batch_sizes 128 350 --steps 20 --rounds 3 --out benchmarks/results/pack-speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recbole_rimirec.config import Config  # noqa: E402
from recbole_rimirec.data.loaders import AllPositionsDataLoader  # noqa: E402
from recbole_rimirec.data.preparation import create_dataset  # noqa: E402


def time_steps(model, loader, steps: int) -> tuple[float, int, int]:
    """Seconds for ``steps`` optimizer steps on the loader's first batches, with their targets and slots."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    batches = []
    for b in loader:
        batches.append(b)
        if len(batches) == steps:
            break
    t = time.perf_counter()
    for b in batches:
        opt.zero_grad()
        model.calculate_loss(b).backward()
        opt.step()
    seconds = time.perf_counter() - t
    targets = sum(int((b["item_id_targets"] > 0).sum()) for b in batches)
    return seconds, targets, sum(b["item_id_list"].numel() for b in batches)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--data_path", default=None)
    p.add_argument("--model", default="SASRecAllPos")
    p.add_argument("--batch_sizes", type=int, nargs="+", default=[128])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    base = {"train_mode": "all_positions", "show_progress": False, "state": "WARNING"}
    if args.data_path:
        base["data_path"] = args.data_path
    config = Config(args.model, args.dataset, config_dict=base)
    dataset = create_dataset(config)
    train_ds = dataset.build()[0]
    rows = []
    for bs in args.batch_sizes:
        timings = {False: [], True: []}
        for _ in range(args.rounds):
            for pack in (False, True):
                cfg = Config(
                    args.model, args.dataset, config_dict={**base, "train_batch_size": bs, "all_positions_pack": pack}
                )
                loader = AllPositionsDataLoader(cfg, train_ds, shuffle=True)
                torch.manual_seed(0)
                model = cfg.model_class(cfg, loader._dataset)
                seconds, targets, slots = time_steps(model, loader, args.steps)
                n_batches = len(loader)
                timings[pack].append(
                    {"s_per_step": seconds / args.steps, "targets": targets, "slots": slots, "epoch_steps": n_batches}
                )
        for pack in (False, True):
            per_step = [t["s_per_step"] for t in timings[pack]]
            rows.append(
                {
                    "train_batch_size": bs,
                    "all_positions_pack": pack,
                    "s_per_step": per_step,
                    "epoch_s_estimate": statistics.median(per_step) * timings[pack][0]["epoch_steps"],
                    "slots_per_target": timings[pack][0]["slots"] / timings[pack][0]["targets"],
                }
            )
            print(json.dumps(rows[-1]))
        ratios = [a["s_per_step"] / b["s_per_step"] for a, b in zip(timings[False], timings[True], strict=True)]
        rows.append({"train_batch_size": bs, "plain_over_packed_per_round": ratios})
        print(json.dumps(rows[-1]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    meta = {"argv": sys.argv, "dataset": args.dataset, "model": args.model, "steps": args.steps, "torch_threads": 1}
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
