"""The docs site builds with --strict and no network, with a gallery page per example."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
pytest.importorskip("mkdocstrings")


@pytest.mark.slow
def test_site_builds_strict(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d",
                           str(site)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    for script in (ROOT / "examples").glob("*.py"):
        assert (site / "gallery" / script.stem / "index.html").is_file(), script.name
    assert (site / "api" / "io" / "index.html").read_text().count("ebmlab.io.load_run") > 0
    for page in ("concepts/inference", "cli", "gallery"):
        assert (site / page / "index.html").is_file()


def test_every_figure_a_page_shows_exists():
    import re

    for page in (ROOT / "docs").rglob("*.md"):
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", page.read_text()):
            assert (page.parent / target).resolve().is_file(), f"{page}: {target}"


def test_links_to_repository_files_point_to_the_repository(tmp_path):
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import hooks
    finally:
        sys.path.pop(0)

    class Page:
        class file:  # noqa: N801 - the shape of mkdocs' Page.file
            src_path = "guide.md"

    config = {"docs_dir": str(ROOT / "docs"), "repo_url": "https://example.org/ebmlab"}
    text = "[readme](../README.md), [gone](../nope.md), [guide](training.md)"
    out = hooks.on_page_markdown(text, Page, config, None)
    assert "(https://example.org/ebmlab/blob/main/README.md)" in out
    assert "(../nope.md)" in out and "(training.md)" in out
