"""The configuration reference: every key of the plugin's YAML files, its default and its meaning.

The meaning of a key is the comment written beside it in ``properties/*.yaml`` (with the indented
comment lines that follow it), so the YAML files are the single source: ``docs/configuration.md``
is generated from them by ``python -m recbole_rimirec.configref > docs/configuration.md`` and a test
fails when the two differ or a key has no comment.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):")
_TYPE = re.compile(r"^\(([\w|]+)\)\s*")


def properties_dir() -> Path:
    """Returns the folder holding the plugin's YAML defaults.

    Returns:
        Path: ``recbole_rimirec/properties`` when installed, else the checkout's ``properties/``.
    """
    here = Path(__file__).resolve().parent
    installed = here / "properties"
    return installed if installed.is_dir() else here.parent / "properties"


@dataclass(frozen=True)
class Key:
    """One key of one YAML layer.

    Attributes:
        name: the config key.
        default: its value as written in that file (a nested block in YAML flow style).
        kind: the type written at the start of its comment (``int``, ``str``, ...), or ``""``.
        meaning: the rest of the comment, continuation lines joined.
    """

    name: str
    default: str
    kind: str
    meaning: str


def read_keys(path: Path) -> list[Key]:
    """Reads a properties YAML file into its keys, in file order.

    Args:
        path: a YAML file whose top-level keys carry ``# (type) meaning`` comments; a comment may go
            on over the following lines that hold only an indented ``#`` comment.

    Returns:
        list[Key]: one per top-level key (a key without a comment has an empty meaning).
    """
    text = path.read_text(encoding="utf-8")
    values = yaml.safe_load(text) or {}
    keys: list[tuple[str, str, list[str]]] = []  # (name, value as written, comment parts)
    for line in text.splitlines():
        match = _KEY.match(line)
        code, _, comment = line.partition(" #")
        if match:
            keys.append((match.group(1), code[match.end() :].strip(), [comment.strip()] if comment.strip() else []))
        elif keys and line[:1].isspace() and line.strip().startswith("#"):
            keys[-1][2].append(line.strip().lstrip("#").strip())
    found = []
    for name, written, parts in keys:
        if not written:  # a nested block: shown in flow style
            written = yaml.safe_dump(values.get(name), default_flow_style=True, width=1000).strip()
        comment = " ".join(parts)
        kind_match = _TYPE.match(comment)
        kind = kind_match.group(1) if kind_match else ""
        found.append(Key(name, written, kind, comment[kind_match.end() :] if kind_match else comment))
    return found


def layers(root: Path | None = None) -> list[tuple[str, Path]]:
    """The plugin's YAML layers in the order Config applies them.

    Args:
        root: the properties folder.

    Returns:
        list[tuple[str, Path]]: (title, file) for overall, sequential, each model, each dataset.
    """
    root = root or properties_dir()
    found = [("All models", root / "overall.yaml"), ("Sequential models", root / "sequential.yaml")]
    found += [(f"Model `{p.stem}`", p) for p in sorted((root / "model").glob("*.yaml"))]
    found += [(f"Data set `{p.stem}`", p) for p in sorted((root / "dataset").glob("*.yaml"))]
    return found


def markdown(root: Path | None = None) -> str:
    """Renders the reference page.

    Args:
        root: the properties folder.

    Returns:
        str: ``docs/configuration.md``'s text.
    """
    root = root or properties_dir()
    out = [
        "# Configuration reference",
        "",
        "Generated from the comments in `properties/*.yaml` by",
        "`python -m recbole_rimirec.configref > docs/configuration.md`; do not edit by hand.",
        "",
        "Layers, later wins: RecBole's own defaults < all models < sequential models < the model's file <",
        "the data set's file < your `--config_files` < `--key=value` on the command line. Keys not listed",
        "here are RecBole's (see its documentation); a key that no layer defines is logged as a warning.",
    ]
    for title, path in layers(root):
        out += ["", f"## {title}", "", f"`properties/{path.relative_to(root).as_posix()}`", ""]
        out += ["| key | default | type | meaning |", "|---|---|---|---|"]
        for key in read_keys(path):
            default, meaning = (text.replace("|", "\\|") for text in (key.default, key.meaning))
            out.append(f"| `{key.name}` | `{default}` | {key.kind.replace('|', ' or ')} | {meaning} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
