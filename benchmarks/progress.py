"""Where the unfinished runs of a results folder stand, from their ``-last.pth`` checkpoints.

A run of ``benchmarks/run.py`` writes its ``runs/*.json`` only when it ends; a run longer than a
session leaves its ``checkpoints/*-last.pth`` (saved before every epoch), from which it resumes
(``--set resume_from=<that file>``). This script writes ``<folder>/progress.json``: for each such
checkpoint whose run has no result file yet, the seed, epochs done, training seconds, the best valid
score so far, the valid curve and the command that resumes it.

Run: python benchmarks/progress.py benchmarks/results/amazon-beauty-cpu-rimirec-prefixes2048
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def unfinished(folder: Path) -> list[dict]:
    """The folder's runs that have a last checkpoint but no result file.

    Args:
        folder: a results folder of ``benchmarks/run.py``.

    Returns:
        list[dict]: one entry per unfinished run (see the module docstring), in file-name order.
    """
    from recbole_rimirec.checkpoint import load_checkpoint

    out = []
    for path in sorted((folder / "checkpoints").glob("*-last.pth")):
        state = load_checkpoint(str(path))
        config = state["config"]
        name = f"{config['dataset']}__{config['model']}__{config['seed']}.json"
        if (folder / "runs" / name).exists():
            continue
        out.append(
            {
                "checkpoint": str(path),
                "model": config["model"],
                "dataset": config["dataset"],
                "seed": config["seed"],
                "epochs_done": state["epoch"],
                "train_s": state.get("train_s"),
                "best_valid_score": state.get("best_valid_score"),
                "epochs_since_best": state.get("cur_step"),
                "valid_curve": state.get("valid_curve") or [],
                "resume": f"--set resume_from={path}",
            }
        )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    if not (folder / "checkpoints").is_dir():
        print(f"error: {folder} has no checkpoints/ folder", file=sys.stderr)
        return 2
    rows = unfinished(folder)
    (folder / "progress.json").write_text(json.dumps(rows, indent=2) + "\n")
    for row in rows:
        print(
            f"{row['model']} {row['dataset']} seed {row['seed']}: {row['epochs_done']} epochs, "
            f"{row['train_s'] or 0:.0f} s, best valid {row['best_valid_score']}"
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
