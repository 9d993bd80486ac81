"""Train and test a model through the recbole_rimirec plugin.

Any other --key=value sets that config key (RecBole's or the plugin's; it wins over the YAML
files); values are checked before the data is read.

Examples:
    python run_rimirec.py                                  # RimiRec on ml-100k
    python run_rimirec.py -m SASRec --out r.json           # a RecBole model, result as JSON
    python run_rimirec.py -m MIND -d amazon-beauty --data_path=/path/to/atomic --epochs=50
    python run_rimirec.py -m SASRecAllPos --all_positions_stride=10 --learning_rate=1e-3
"""

from __future__ import annotations

import argparse
import json
import os
import sys

DEFAULT_MODEL = "RimiRec"


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Splits the command line into the runner's options and RecBole ``--key=value`` overrides.

    Args:
        argv: arguments without the program name.

    Returns:
        (options, overrides).
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
    parser.add_argument(
        "-d", "--dataset", default="ml-100k", help="dataset name (default ml-100k, shipped with recbole)"
    )
    parser.add_argument("--config_files", nargs="+", default=[], help="YAML config files, later ones win")
    parser.add_argument("--out", help="write the run's result as JSON to this file")
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


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; user mistakes print one line and return 2.

    Args:
        argv: arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        int: the exit status.
    """
    options, overrides = parse(sys.argv[1:] if argv is None else argv)
    from recbole_rimirec.errors import ConfigError
    from recbole_rimirec.quick_start import run

    try:
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
    if options.out:
        tmp = options.out + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
        os.replace(tmp, options.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
