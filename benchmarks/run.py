"""One benchmark command: every model on every dataset, same split, metrics and early stopping.

Example (CPU, ml-100k, 3 seeds):
    python benchmarks/run.py --datasets ml-100k --models RimiRec SASRecAllPos ComiRecSA ComiRecDR MIND Pop \\
        --seeds 2020 2021 2022 --out benchmarks/results/ml-100k-cpu

Each run goes through ``recbole_rimirec.quick_start.run`` (the code path of ``run_rimirec.py``)
and is written to ``<out>/runs/<dataset>__<model>__<seed>.json`` as soon as it ends; ``--resume``
skips runs already there and continues a run cut off mid-training from its ``-last.pth``.
``--time_budget`` caps each run's training time; capped runs are kept but marked and never enter
the headline table. ``benchmarks/report.py`` (also called at the end)
writes the CSV, JSON, Markdown table and PNG plots.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import platform
import sys
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def parse_value(text: str):
    """Reads a --set value as YAML (numbers, lists, booleans, ``~``), else keeps the string.

    PyYAML reads ``1e-3`` (no dot) as text, so a string that Python reads as a number is one; ``None``
    is None, as on RecBole's command line.
    """
    import yaml

    if text == "None":
        return None

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    return value


def portable(value):
    """A value as a results file may hold it: no absolute path of this machine.

    A path inside the repository becomes relative to its root; another absolute path (a data
    folder, a scratch folder) becomes the placeholder ``<path>``. ``key=path`` keeps its key.

    Args:
        value: a command-line argument or config value.

    Returns:
        The value, with any absolute path replaced; non-strings unchanged.
    """
    if not isinstance(value, str):
        return value
    key, sep, path = value.rpartition("=") if "=" in value and not value.startswith("/") else ("", "", value)
    if not os.path.isabs(path):
        return value
    resolved = Path(path).resolve()
    shown = resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else "<path>"
    return key + sep + shown


def record_command(meta_path: Path, argv: list[str]) -> None:
    """Appends one command line to a results folder's ``meta.json``.

    Benchmarks are often launched as two processes on one folder; the read-modify-write holds an
    exclusive lock on a sibling ``.lock`` file and replaces the file atomically, so concurrent
    starts neither interleave their writes nor drop each other's command.

    Args:
        meta_path: the folder's ``meta.json`` (created when missing).
        argv: the command line to record.
    """
    with open(meta_path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        meta.update({"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()})
        meta.setdefault("commands", []).append([portable(a) for a in argv])
        tmp = meta_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp, meta_path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["ml-100k"])
    parser.add_argument(
        "--models", nargs="+", default=["RimiRec", "SASRecAllPos", "ComiRecSA", "ComiRecDR", "MIND", "Pop"]
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020])
    parser.add_argument("--data_path", default=None, help="folder holding <dataset>/ atomic files (ml-100k needs none)")
    parser.add_argument("--out", required=True, help="results folder")
    parser.add_argument("--time_budget", type=float, default=None, help="seconds of training per run (runs are marked)")
    parser.add_argument("--resume", action="store_true", help="skip finished runs; continue interrupted ones")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config for every run")
    parser.add_argument(
        "--model_set", nargs="*", default=[], metavar="MODEL:KEY=VALUE", help="config for one model's runs"
    )
    args = parser.parse_args(argv)

    from report import write_report

    from recbole_rimirec.errors import ConfigError
    from recbole_rimirec.quick_start import run

    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    common = {"show_progress": False, "state": "WARNING", "checkpoint_dir": str(out / "checkpoints")}
    if args.data_path:
        common["data_path"] = args.data_path
    if args.time_budget:
        common["time_budget_s"] = args.time_budget
    for item in args.set:
        key, _, value = item.partition("=")
        common[key] = parse_value(value)
    per_model: dict[str, dict] = {}
    for item in args.model_set:
        model, _, kv = item.partition(":")
        key, _, value = kv.partition("=")
        per_model.setdefault(model, {})[key] = parse_value(value)

    plan = [(d, m, s) for d in args.datasets for s in args.seeds for m in args.models]
    record_command(out / "meta.json", sys.argv)
    bar = tqdm(plan, desc="benchmark", unit="run")
    for dataset, model, seed in bar:
        path = out / "runs" / f"{dataset}__{model}__{seed}.json"
        bar.set_postfix_str(f"{dataset} {model} {seed}")
        if args.resume and path.exists():
            continue
        config = {**common, **per_model.get(model, {}), "seed": seed}
        if args.resume and "resume_from" not in config:
            unfinished = interrupted_run(out / "checkpoints", model, dataset, config)
            if unfinished:  # a run cut off mid-training (a session's end, say) goes on exactly where it stopped
                print(f"resuming {dataset} {model} {seed} from {unfinished}", file=sys.stderr)
                config["resume_from"] = unfinished
        try:
            result = run(model, dataset, config_dict=config)
        except ConfigError as err:
            print(f"error: {dataset} {model} {seed}: {err}", file=sys.stderr)
            return 2
        result["config"] = {k: portable(v) for k, v in config.items() if k != "checkpoint_dir"}
        for key in ("checkpoint", "last_checkpoint"):
            result[key] = portable(result.get(key))
        result["device"] = "cuda" if _cuda() else "cpu"
        if _cuda():
            result["device_name"] = _card()
        result["torch_threads"] = _threads()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result) + "\n")
        os.replace(tmp, path)
    write_report(out)
    return 0


def interrupted_run(folder: Path, model: str, dataset: str, config: dict) -> str | None:
    """The ``-last.pth`` of an unfinished run with these settings, if one is in ``folder``.

    Args:
        folder: the benchmark's checkpoint folder.
        model: the model name.
        dataset: the data set name.
        config: the settings the run would be given (seed included).

    Returns:
        str | None: the newest matching file (its model, data set and every given setting equal).
    """
    from recbole_rimirec.checkpoint import load_checkpoint

    wanted = {k: v for k, v in config.items() if k not in ("checkpoint_dir", "resume_from")}
    found = []
    for path in sorted(folder.glob(f"{model}-*-last.pth"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            state = load_checkpoint(str(path))
        except Exception:  # a file being written, or not a plugin checkpoint: not one to resume
            continue
        saved = state.get("config", {})
        given = {
            k: v for k, v in state.get("external_config", {}).items() if k not in ("checkpoint_dir", "resume_from")
        }
        if saved.get("model") == model and saved.get("dataset") == dataset and given == wanted:
            found.append(str(path))
    return found[0] if found else None


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _card() -> str:
    """The GPU's name, as ``torch.cuda.get_device_name()`` gives it."""
    import torch

    return torch.cuda.get_device_name()


if __name__ == "__main__":
    sys.exit(main())
