"""The package's shape: README's Layout table matches the tree, and the import contracts in
pyproject.toml (layers, no cycles) hold."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def layout_rows() -> dict[str, str]:
    """README's Layout table: {folder: what it holds}."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `([^`]+/)` \| (.*) \|$", section, re.M))


def test_layout_lists_every_package_folder_and_module():
    rows = layout_rows()
    packages = sorted(str(p.parent.relative_to(ROOT)) + "/"
                      for p in (ROOT / "emotion_lab").rglob("__init__.py"))
    assert packages == ["emotion_lab/", "emotion_lab/data/", "emotion_lab/evaluation/",
                        "emotion_lab/inference/", "emotion_lab/models/", "emotion_lab/testing/",
                        "emotion_lab/training/"]
    for package in packages:
        assert package in rows, f"README Layout lacks {package}"
        named = set(re.findall(r"[a-z_]+", rows[package]))
        modules = {p.stem for p in (ROOT / package).glob("*.py") if p.stem != "__init__"}
        assert modules - named == set(), f"{package}: modules missing from README Layout"
    groups = {p.name for p in (ROOT / "conf").iterdir() if p.is_dir()}
    assert groups - set(re.findall(r"[a-z_]+", rows["conf/"])) == set()


def test_layout_names_only_what_exists():
    for folder, holds in layout_rows().items():
        assert (ROOT / folder).is_dir(), f"README Layout names {folder}, which does not exist"
        if folder.startswith("emotion_lab/"):
            # each module named before its parenthesis or list separator must exist
            named = re.findall(r"(?:^|[:;,] )([a-z_]+)(?= \(|;|,|$)", holds)
            missing = [m for m in named if not (ROOT / folder / f"{m}.py").is_file()]
            assert not missing, f"{folder}: README names {missing}, which are not modules"


def test_import_contracts_hold():
    assert shutil.which("lint-imports"), "import-linter is missing: pip install -e '.[dev]'"
    done = subprocess.run(["lint-imports", "--no-cache"], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
