"""The command line: ``recbole-rimirec`` (console script) and ``python run_rimirec.py``.

Trains and tests one model through the plugin. Any other ``--key=value`` sets that config key
(RecBole's or the plugin's; it wins over the YAML files); values are checked before the data is read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

DEFAULT_MODEL = "RimiRec"
EXAMPLES = """examples:
  recbole-rimirec                                   RimiRec on ml-100k (shipped with recbole)
  recbole-rimirec -m SASRec --out result.json       a RecBole model, the result as JSON
  recbole-rimirec -m ComiRecSA -d amazon-beauty --data_path=<folder holding amazon-beauty/>
  recbole-rimirec -m RimiRec --select_budget=0.05 --epochs=50 --config_files my.yaml
  recbole-rimirec -m ComiRecSA --eval_protocol=comirec   ComiRec's protocol: users split 8:1:1, 80% in

commands (each with its own --help):
  recbole-rimirec explain CHECKPOINT --sample 3     a user's circles, their P(node | user), best items
  recbole-rimirec tree-report CHECKPOINT            the tree's shape, purity and usefulness (+ a PNG)
  recbole-rimirec convert amazon-books|taobao --raw DIR --out DATA_PATH   ComiRec's raw files -> atomic"""
MAIN_KEYS = (
    "train_mode",
    "epochs",
    "learning_rate",
    "train_batch_size",
    "MAX_ITEM_LIST_LENGTH",
    "data_path",
    "checkpoint_dir",
    "resume_from",
    "time_budget_s",
    "select_budget",
    "retrieval",
    "tree_branching",
    "tree_leaf_size",
)


def epilog() -> str:
    """The end of ``--help``: examples, the models and data sets found, and the main keys.

    Returns:
        str: plain text, wrapped to 100 columns.
    """
    import textwrap

    from recbole_rimirec import catalog

    def block(title: str, names) -> list[str]:
        return [title, *textwrap.wrap(", ".join(names), 100, initial_indent="  ", subsequent_indent="  ")]

    lines = [EXAMPLES, ""]
    lines += block("plugin models (found first):", catalog.plugin_models())
    for kind, names in catalog.recbole_models().items():
        lines += block(f"RecBole {kind.replace('_', '-')} models:", names)
    lines += ["data sets found:"] + [f"  {name}: {where}" for name, where in catalog.datasets().items()]
    lines += block("main keys (--key=value; all of them in docs/configuration.md):", MAIN_KEYS)
    return "\n".join(lines)


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Splits the command line into the runner's options and RecBole ``--key=value`` overrides.

    Args:
        argv: arguments without the program name.

    Returns:
        (options, overrides).
    """
    parser = argparse.ArgumentParser(
        prog="recbole-rimirec",
        description="Train and test a model (the plugin's or RecBole's) with RecBole's data pipeline and metrics.",
        epilog=epilog() if {"-h", "--help"} & set(argv) else None,  # reads ~100 source files: only for --help
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-m", "--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
    parser.add_argument(
        "-d", "--dataset", default="ml-100k", help="dataset name (default ml-100k, shipped with recbole)"
    )
    parser.add_argument("--config_files", nargs="+", default=[], help="YAML config files, later ones win")
    parser.add_argument("--out", help="write the run's result as JSON to this file")
    parser.add_argument(
        "--evaluate",
        metavar="CHECKPOINT",
        help="re-evaluate a saved run instead of training; --key=value changes evaluation keys (--select_budget=0.2)",
    )
    parser.add_argument("--split", choices=["test", "valid"], default="test", help="the split --evaluate scores")
    parser.add_argument(
        "--export-item-vectors",
        metavar="CHECKPOINT",
        help="write a saved run's item embeddings to --out FILE.npz, for tree_vectors: pretrained",
    )
    parser.add_argument("--nproc", type=int, default=1, help="processes on this machine (gloo on CPU, NCCL on GPU)")
    parser.add_argument("--world_size", type=int, default=-1, help="processes on all machines (default nproc)")
    parser.add_argument("--ip", default="localhost", help="address of the machine with rank 0")
    parser.add_argument("--port", type=int, default=5678, help="a free TCP port on that machine")
    parser.add_argument("--group_offset", type=int, default=0, help="global rank of this machine's first process")
    options, rest = parser.parse_known_args(argv)
    options.config_files = [f for group in options.config_files for f in group.split()]
    return options, rest


def run_distributed(options: argparse.Namespace, overrides: list[str]) -> dict | None:
    """Checks the settings once, then trains in ``options.nproc`` processes.

    Args:
        options: the runner's options.
        overrides: ``--key=value`` strings.

    Returns:
        dict | None: rank 0's result.
    """
    from recbole_rimirec.config import Config
    from recbole_rimirec.data.preparation import check_dataset_files
    from recbole_rimirec.distributed import spawn

    check_dataset_files(Config(options.model, options.dataset, options.config_files, cmd_args=overrides))
    return spawn(
        "run",
        options.nproc,
        world_size=options.world_size,
        ip=options.ip,
        port=options.port,
        offset=options.group_offset,
        model=options.model,
        dataset=options.dataset,
        config_file_list=options.config_files,
        cmd_args=overrides,
    )


def evaluate(options: argparse.Namespace, overrides: list[str]) -> int:
    """Re-evaluates a saved run (``--evaluate CHECKPOINT``) and prints its metrics.

    Args:
        options: the runner's options (``evaluate``, ``split``, ``out``).
        overrides: ``--key=value`` strings, read by the Config as a training run's are.

    Returns:
        int: the exit status.

    Raises:
        ConfigError: for a missing checkpoint, a malformed override or a refused value.
    """
    from recbole_rimirec.errors import ConfigError
    from recbole_rimirec.quick_start import evaluate_saved

    if not os.path.isfile(options.evaluate):
        raise ConfigError(f"--evaluate {options.evaluate}: no such checkpoint")
    result = evaluate_saved(options.evaluate, split=options.split, cmd_args=overrides)
    print(json.dumps({f"{options.split}_result": result["result"]}))
    write(result, options.out)
    return 0


def export(options: argparse.Namespace) -> int:
    """Writes a saved run's item embeddings (``--export-item-vectors CHECKPOINT --out FILE.npz``).

    Args:
        options: the runner's options (``export_item_vectors``, ``out``).

    Returns:
        int: the exit status.

    Raises:
        ConfigError: for a missing checkpoint or ``--out``, or a checkpoint without item embeddings.
    """
    from recbole_rimirec.errors import ConfigError
    from recbole_rimirec.quick_start import export_item_vectors

    if not os.path.isfile(options.export_item_vectors):
        raise ConfigError(f"--export-item-vectors {options.export_item_vectors}: no such checkpoint")
    if not options.out:
        raise ConfigError("--export-item-vectors needs --out FILE.npz")
    count = export_item_vectors(options.export_item_vectors, options.out)
    print(f"{count} item vectors written to {options.out}")
    return 0


def write(result: dict, out: str | None) -> None:
    """Writes a result as JSON, atomically, when ``--out`` names a file."""
    if out:
        tmp = out + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
        os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; user mistakes print one line and return 2.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        int: the exit status.
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["explain"]:  # a user's circles in a saved RimiRec run
        from recbole_rimirec.explain import main as explain_main

        return explain_main(argv[1:])
    if argv[:1] == ["convert"]:  # raw Amazon Books / Taobao files -> atomic files
        from recbole_rimirec.convert import main as convert_main

        return convert_main(argv[1:])
    if argv[:1] == ["tree-report"]:  # the tree's shape, purity and usefulness in a saved RimiRec run
        from recbole_rimirec.tree_report import main as tree_report_main

        return tree_report_main(argv[1:])
    options, overrides = parse(argv)
    from recbole_rimirec.errors import ConfigError
    from recbole_rimirec.quick_start import run

    try:
        if options.export_item_vectors:
            return export(options)
        if options.evaluate:
            return evaluate(options, overrides)
        if options.nproc > 1 or options.world_size > 1:
            result = run_distributed(options, overrides)
        else:
            result = run(options.model, options.dataset, options.config_files, cmd_args=overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result is None:  # a machine without global rank 0
        return 0
    print(json.dumps({"test_result": result["test_result"]}))
    write(result, options.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
