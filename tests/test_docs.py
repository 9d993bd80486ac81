"""The documentation stays true to the code: the configuration reference, the README, the help, no machine paths."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from recbole_rimirec import configref

ROOT = Path(__file__).resolve().parents[1]
# a home or work folder of some machine; built from parts so this file does not match itself
MACHINE_PATH = re.compile("(?<![\\w.~-])/" + "(?:home|work|root|Users|mnt/data)/[\\w.-]+")


def test_configuration_reference_is_generated_from_the_yaml():
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert page == configref.markdown(), "run: python -m recbole_rimirec.configref > docs/configuration.md"


def test_every_yaml_key_is_documented_with_a_type_and_a_meaning():
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    layers = configref.layers()
    assert len(layers) >= 2 + 5 + 3  # overall, sequential, the plugin's models, the data sets
    for _, path in layers:
        for key in configref.read_keys(path):
            assert key.kind and key.meaning, f"{path.name}: {key.name} needs a '# (type) meaning' comment"
            assert f"| `{key.name}` |" in page


def test_read_keys_joins_continued_comments_and_shows_nested_blocks(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(
        "# header comment\n"
        "alpha: 1.0     # (float) weight of\n"
        "               #   the node term\n"
        "eval_args:     # (dict) split | mode\n"
        "  mode: full\n"
        "bare: ~\n"
    )
    alpha, eval_args, bare = configref.read_keys(path)
    assert alpha == configref.Key("alpha", "1.0", "float", "weight of the node term")
    assert eval_args == configref.Key("eval_args", "{mode: full}", "dict", "split | mode")
    assert bare == configref.Key("bare", "~", "", "")
    assert "| `eval_args` | `{mode: full}` | dict | split \\| mode |" in configref.markdown(tmp_path_layers(tmp_path))


def tmp_path_layers(tmp_path: Path) -> Path:
    """A properties folder holding the file above as its overall.yaml."""
    root = tmp_path / "properties"
    (root / "model").mkdir(parents=True)
    (root / "dataset").mkdir()
    (root / "overall.yaml").write_text((tmp_path / "x.yaml").read_text())
    (root / "sequential.yaml").write_text("loss_type: CE  # (str) full softmax\n")
    return root


def tracked_files() -> list[Path]:
    """The repository's tracked files (every file but ignored ones where git is missing)."""
    try:
        listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        return [ROOT / name for name in listed.splitlines()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "saved", "log", "build", "dist", "__pycache__", ".hypothesis"}
        return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]


def test_no_tracked_file_holds_a_machine_path():
    found = []
    for path in tracked_files():
        if path.suffix in {".png", ".pth", ".npz"} or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        found += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in MACHINE_PATH.finditer(text)]
    assert not found, "absolute machine paths (use relative paths or <placeholders>):\n" + "\n".join(found[:20])


def test_machine_path_pattern_catches_home_and_work_folders():
    assert MACHINE_PATH.search("--data_path " + "/" + "work/shared/data")
    assert MACHINE_PATH.search('"checkpoint": "/' + 'home/ann/repo/saved/x.pth"')
    assert not MACHINE_PATH.search("--data_path ../shared/data benchmarks/results/x/runs")


def test_readme_is_short_and_links_to_pages_that_exist():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    links = re.findall(r"\]\(((?:docs|benchmarks)/[^)#\s]+)", text)
    assert {"docs/configuration.md", "docs/rimirec.md", "docs/training.md", "docs/benchmarks.md"} <= set(links)
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing


def test_docs_link_to_files_that_exist():
    missing = []
    for page in (ROOT / "docs").glob("*.md"):
        for link in re.findall(r"\]\(([^)#\s:]+)", page.read_text(encoding="utf-8")):
            if not (page.parent / link).resolve().exists():
                missing.append(f"{page.name}: {link}")
    assert not missing


def test_help_lists_models_data_sets_and_keys():
    shown = subprocess.run(
        [sys.executable, "-m", "recbole_rimirec.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in ("RimiRec", "ComiRecSA", "MIND", "SASRec", "GRU4Rec", "ml-100k", "amazon-beauty", "select_budget"):
        assert name in shown
