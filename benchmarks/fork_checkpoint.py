"""Copies a finished run's checkpoints to a new folder, so a run resumed from them writes its own files.

A run resumed from a ``-last.pth`` goes on writing the files that checkpoint names (its best
checkpoint included). To branch a new setting off a finished run (``tree_rebuild=plateau`` from a
README run's plateau, say) without touching that run's files:

    python benchmarks/fork_checkpoint.py <run's checkpoints/...-last.pth> <new folder>
    python benchmarks/run.py ... --set resume_from=<printed path> tree_rebuild=plateau --out <new folder>

The copy's ``best_file`` points at the copied best checkpoint; nothing else changes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from recbole_rimirec.checkpoint import load_checkpoint  # noqa: E402
from recbole_rimirec.errors import ConfigError  # noqa: E402


def fork(last: str, folder: str) -> str:
    """Copies ``last`` and the best checkpoint it names into ``folder/checkpoints``.

    Args:
        last: a plugin ``-last.pth`` file.
        folder: the new run's output folder.

    Returns:
        str: the copied ``-last.pth`` (its ``best_file`` is the copied best checkpoint).
    """
    state = load_checkpoint(last)
    target = os.path.join(folder, "checkpoints")
    os.makedirs(target, exist_ok=True)
    best = os.path.join(target, os.path.basename(state["best_file"]))
    shutil.copyfile(state["best_file"], best)
    state["best_file"] = best
    copy = best.removesuffix(".pth") + "-last.pth"
    torch.save(state, copy)
    return copy


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("last", help="the finished run's -last.pth")
    parser.add_argument("folder", help="the new run's output folder")
    args = parser.parse_args(argv)
    try:
        print(fork(args.last, args.folder))
    except ConfigError as err:  # a missing, truncated or pickled file: one line
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
