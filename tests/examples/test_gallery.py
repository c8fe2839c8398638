"""Every gallery script in examples/ runs at reduced size (--quick) and writes its figure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))


def test_the_gallery_has_one_script_per_capability():
    names = {p.stem for p in SCRIPTS}
    assert {"infer_every_minimum", "train_ellipse", "gibbs_log_partition",
            "samplers_hard_target", "train_2d_density", "distributed_training",
            "custom_energy"} <= names
    assert len(names) >= 10


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_gallery_script_runs_quick(script, tmp_path):
    source = script.read_text()
    if "--quick" not in source:
        pytest.skip(f"{script.name} has no --quick mode yet")
    assert source.startswith('"""'), f"{script.name} needs a docstring (its gallery page)"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.strip(), f"{script.name} printed no result"
    assert list(tmp_path.rglob("*.png")), f"{script.name} wrote no figure"
