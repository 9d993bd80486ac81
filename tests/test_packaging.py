"""properties/ must reach users of a plain (non-editable) ``pip install .``."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_properties_and_finds_them(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("recbole_rimirec-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "recbole_rimirec/properties/overall.yaml" in names
    assert "recbole_rimirec/properties/sequential.yaml" in names
    assert any(n.startswith("recbole_rimirec/properties/model/") for n in names)
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "recbole-rimirec = recbole_rimirec.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)], check=True
    )
    found = subprocess.run(
        [sys.executable, "-c", "from recbole_rimirec.config import properties_dir; print(properties_dir())"],
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(found) == site / "recbole_rimirec" / "properties"
    assert (Path(found) / "overall.yaml").is_file()
