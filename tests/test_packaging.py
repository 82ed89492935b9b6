"""Every source folder ships: each folder holding Python or YAML files maps to a package
listed in pyproject.toml, and its YAML files are declared as package data."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_folder_is_a_listed_package() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = {Path(v): k for k, v in tool["package-dir"].items()}
    listed, data = set(tool["packages"]), tool["package-data"]
    missing, no_data = [], []
    for top, name in dirs.items():
        for folder in [ROOT / top, *(p for p in (ROOT / top).rglob("*") if p.is_dir())]:
            if "__pycache__" in folder.parts:
                continue
            rel = folder.relative_to(ROOT / top)
            pkg = ".".join([name, *rel.parts])
            if any(folder.glob("*.py")) or any(folder.glob("*.yaml")):
                if pkg not in listed:
                    missing.append(pkg)
            if any(folder.glob("*.yaml")) and "*.yaml" not in data.get(pkg, []):
                no_data.append(pkg)
    assert not missing, f"packages missing from pyproject.toml: {missing}"
    assert not no_data, f"YAML files not declared as package data in: {no_data}"
