"""The card templates are found through `importlib.resources` in every kind of install.

`model_cards/` is their source; pyproject.toml installs it as the package `jmlr_hf.hub.templates`. The test suite
runs on an editable install (the source tree); the test below builds a wheel and installs it into a plain folder,
as a non-editable, `--user` or `--target` install lays it out, and loads the templates from there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from jmlr_hf.hub import card_template_path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted(path.name for path in (ROOT / "model_cards").glob("*.md"))


def test_the_source_has_the_three_templates():
    assert TEMPLATES == ["dataset_card_template.md", "index_card_template.md", "model_card_template.md"]


@pytest.mark.parametrize("name", TEMPLATES)
def test_templates_are_found_in_this_install(name):
    path = card_template_path(name)
    assert path.is_file() and path.read_text(encoding="utf-8") == (ROOT / "model_cards" / name).read_text("utf-8")


def test_a_missing_template_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="no_such_template.md is missing from jmlr_hf.hub.templates"):
        card_template_path("no_such_template.md")


# Run in a fresh interpreter whose only copy of jmlr_hf is the installed wheel: the editable install's import hook
# (a meta path finder that setuptools installs through a .pth file) is taken out first.
INSTALLED_CHECK = """
import sys
sys.meta_path = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]
sys.path.insert(0, sys.argv[1])
from jmlr_hf.hub import card_template_path
for name in sys.argv[2:]:
    path = card_template_path(name)
    assert str(path).startswith(sys.argv[1]), path
    assert path.read_text(encoding="utf-8").strip(), path
print("OK")
"""


def test_templates_are_found_in_a_wheel_install(tmp_path):
    source = tmp_path / "source"
    for name in ("jmlr_hf", "model_cards"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("jmlr_hf-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"jmlr_hf/hub/templates/{name}" for name in TEMPLATES} <= set(names)
    assert not any(name.startswith(("model_cards/", "share/")) for name in names)

    target = tmp_path / "site"
    install = subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    check = subprocess.run(
        [sys.executable, "-c", INSTALLED_CHECK, str(target), *TEMPLATES],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0, check.stderr[-3000:]
    assert check.stdout.strip().endswith("OK")
