"""What the runner can run: the plugin's models, RecBole's models and the data sets it can find.

Read from the source files, without importing any model (importing RecBole's model packages is
slow and some need optional packages), so ``--help`` stays fast.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from recbole_rimirec.configref import properties_dir


def _classes_named_like_their_file(folder: Path) -> list[str]:
    """Classes ``Foo`` defined in ``foo.py`` files under a folder (RecBole's and the plugin's lookup rule).

    Args:
        folder: a package folder, searched recursively.

    Returns:
        list[str]: the class names, sorted case-insensitively.
    """
    found = set()
    for path in folder.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found.update(
            node.name for node in tree.body if isinstance(node, ast.ClassDef) and node.name.lower() == path.stem
        )
    return sorted(found, key=str.lower)


def plugin_models() -> list[str]:
    """The plugin's models (found first by the runner).

    Returns:
        list[str]: class names, e.g. ``RimiRec``, ``SASRecAllPos``.
    """
    return _classes_named_like_their_file(Path(__file__).resolve().parent / "model")


def recbole_models() -> dict[str, list[str]]:
    """RecBole's models by kind.

    Returns:
        dict[str, list[str]]: ``general``, ``sequential``, ... -> class names; empty when RecBole is missing.
    """
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        return {}
    model_root = Path(next(iter(spec.submodule_search_locations))) / "model"
    return {
        folder.name.removesuffix("_recommender"): _classes_named_like_their_file(folder)
        for folder in sorted(model_root.glob("*_recommender"))
    }


def datasets(data_path: str | Path = "dataset") -> dict[str, str]:
    """Data sets the runner knows about, with where each comes from.

    Args:
        data_path: RecBole's ``data_path``; its sub-folders holding ``<name>.inter`` are listed.

    Returns:
        dict[str, str]: name -> ``shipped with recbole``, ``plugin defaults`` (a
        ``properties/dataset/<name>.yaml``; the atomic files come through ``--data_path``) or the folder.
    """
    found = {}
    spec = importlib.util.find_spec("recbole")
    if spec is not None and spec.submodule_search_locations:
        example = Path(next(iter(spec.submodule_search_locations))) / "dataset_example"
        found.update({p.name: "shipped with recbole" for p in sorted(example.glob("*")) if p.is_dir()})
    for path in sorted((properties_dir() / "dataset").glob("*.yaml")):
        found.setdefault(path.stem, "plugin defaults; atomic files through --data_path")
    for inter in sorted(Path(data_path).glob("*/*.inter")):
        if inter.stem == inter.parent.name:
            found[inter.stem] = str(inter.parent)
    return found
