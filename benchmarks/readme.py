"""Copies benchmark tables into README.md between markers, so no figure there is typed by hand.

Run: python benchmarks/readme.py benchmarks/results/ml-100k-cpu [more folders, or a scale-run .json]
Each folder's table.md, its ann_eval.md when there is one, the command that made it (meta.json)
and its plots replace the block
between ``<!-- results:start -->`` and ``<!-- results:end -->``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- results:start -->", "<!-- results:end -->"


def block(folder: Path) -> str:
    meta = json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").exists() else {}
    rel = folder.resolve().relative_to(ROOT)
    lines = [f"#### `{rel}`", ""]
    commands = ([meta["argv"]] if "argv" in meta else []) + meta.get("commands", [])
    for argv in commands:
        lines.append(command_line(argv))
    if commands:
        lines.append(f"\nMachine: {meta.get('cpu_count')} cores ({meta.get('machine')}), CPU only.")
        threads = _threads(folder)
        if threads:
            lines.append(f"Torch threads per run (where recorded): {threads}.")
        lines.append("")
    lines.append((folder / "table.md").read_text().strip())
    lines.append("")
    if (folder / "ann_eval.md").exists():  # benchmarks/ann_eval.py: the same weights, exact and ANN retrieval
        lines.append((folder / "ann_eval.md").read_text().strip())
        lines.append("")
    for png in sorted(folder.glob("*.png")):
        lines.append(f"![{png.stem}]({png.resolve().relative_to(ROOT)})")
    return "\n".join(lines) + "\n"


def command_line(argv: list[str]) -> str:
    """One recorded command as a README bullet a user can run.

    Paths are shown from the repository root, wherever the run was started from. A run continued
    from a checkpoint (``--set resume_from=...``) is shown without it, since checkpoints are not
    committed: run whole, the command gives the same result (resuming is exact, see README).

    Args:
        argv: the command line as run.py recorded it in meta.json.

    Returns:
        A Markdown bullet.
    """
    shown, resumed, i = [], False, 0
    while i < len(argv):
        if argv[i] == "--set":
            values = []
            i += 1
            while i < len(argv) and not argv[i].startswith("--"):
                if argv[i].startswith("resume_from="):
                    resumed = True
                else:
                    values.append(argv[i])
                i += 1
            shown += ["--set", *values] if values else []
            continue
        shown.append(argv[i])
        i += 1
    note = " (continued from an earlier run's checkpoint)" if resumed else ""
    return f"- `python {' '.join(_from_root(a) for a in shown)}`{note}"


def _from_root(arg: str) -> str:
    """An argument with any absolute path to the repository's benchmarks/ cut to start there
    (``--out /home/x/repo/benchmarks/results/a`` or ``resume_from=/.../benchmarks/...``)."""
    if "benchmarks/" not in arg:
        return arg
    key, sep, value = arg.rpartition("=") if "=" in arg else ("", "", arg)
    return key + sep + value[value.index("benchmarks/") :] if "benchmarks/" in value else arg


def _threads(folder: Path) -> str:
    results = folder / "results.json"
    if not results.exists():
        return ""
    found = sorted({r["torch_threads"] for r in json.loads(results.read_text())["runs"] if r.get("torch_threads")})
    return ", ".join(map(str, found))


def scale_block(path: Path) -> str:
    data = json.loads(path.read_text())
    rel = path.resolve().relative_to(ROOT)
    lines = [f"#### `{rel}` ({data['meta']['machine']})", ""]
    lines.append(
        "| items x 64 | tree build s | index build s | index memory / raw | per-category q/s | full scan q/s |"
    )
    lines.append("|---|---|---|---|---|---|")
    for r in data["rows"]:
        lines.append(
            f"| {r['items']:,} | {r['tree_build_s']:.1f} | {r['index_build_s']:.2f} | {r['index_over_raw']:.2f} "
            f"| {r['per_category_qps']:.0f} | {r['full_scan_qps']:.0f} |"
        )
    lines.append("")
    lines.append("Per-category: 10 random leaves per query (top 50 each, merged); full scan: top 50 of the library.")
    return "\n".join(lines) + "\n"


def main(folders: list[str]) -> int:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        print(f"README.md has no {START} ... {END} block", file=sys.stderr)
        return 2
    missing = [f for f in folders if not Path(f).exists()]
    if missing:
        print(f"error: no such results folder or file: {', '.join(missing)}", file=sys.stderr)
        return 2
    body = "\n".join(scale_block(Path(f)) if f.endswith(".json") else block(Path(f)) for f in folders)
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + START + "\n" + body + END + tail)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
