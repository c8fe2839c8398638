"""Command-line smoke tests: run as subprocesses, in a temporary folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ebmlab.demo import SECTIONS


def _run(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ebmlab", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_help_lists_commands(tmp_path):
    result = _run("--help", cwd=tmp_path)
    assert result.returncode == 0 and "demo" in result.stdout


@pytest.mark.slow
def test_demo_quick_writes_every_section(tmp_path):
    # A hang guard, not a speed test: the quick demo takes ~1-2 min alone, far more on a loaded
    # machine.
    result = _run("demo", "--quick", "--out", str(tmp_path / "out"), cwd=tmp_path, timeout=1200)
    assert result.returncode == 0, result.stderr
    for name in SECTIONS:
        assert f"== {name}" in result.stdout
    pngs = list((tmp_path / "out").glob("*.png"))
    assert len(pngs) >= len(SECTIONS)
    assert all(p.stat().st_size > 10_000 for p in pngs)
    assert "spine_minima.png" in {p.name for p in pngs}


def test_demo_unknown_section_is_a_clear_error(tmp_path):
    result = _run("demo", "--section", "nope", "--out", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and "unknown demo section 'nope'" in result.stderr
