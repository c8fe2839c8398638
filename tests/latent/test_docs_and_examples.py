"""docs/latent.md runs as written, the example script runs, and the figures draw."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import torch

import ebmlab as eb

ROOT = Path(__file__).resolve().parents[2]


def test_latent_doc_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "latent.md").read_text(),
                        flags=re.S)
    assert len(blocks) >= 5
    namespace: dict[str, object] = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/latent.md block {i}", "exec"), namespace)
    # the claims the examples print
    w = namespace["model"].w.detach()
    assert (w - torch.tensor([2.0, 1.5])).abs().max() < 0.1
    assert bool((namespace["res"].energy[namespace["res"].valid] < 1e-6).all())


def test_train_ellipse_example_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_ellipse.py"), "--steps", "20",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "beta=inf: w =" in result.stdout and "beta=10: w =" in result.stdout
    assert (tmp_path / "train_ellipse.png").stat().st_size > 10_000


def test_latent_plots_draw(tmp_path):
    grid = eb.latent.Grid(0.0, 2 * math.pi, 24, periodic=True)
    ellipse = eb.energies.Ellipse()
    free = eb.FreeEnergy(ellipse, grid)
    fig, axes = eb.plot.subplots(3, 2)
    eb.plot.free_energy_map(free, num=15, step=1.0, data=torch.zeros(3, 2),
                            manifold=eb.manifold(ellipse, grid)[0], ax=axes[0])
    eb.plot.energy_vs_z(ellipse, grid, torch.tensor([[0.5, 0.5]]), num_steps=5, ax=axes[1])
    section = torch.stack([torch.zeros(9), torch.linspace(-2, 2, 9)], -1)
    eb.plot.free_energy_vs_beta(ellipse, grid, section, ax=axes[2])
    eb.plot.manifold(ellipse, grid, data=torch.zeros(2, 2), ax=axes[3])
    eb.plot.responsibilities(eb.FreeEnergy(ellipse, grid, beta=1.0), torch.zeros(1, 2),
                             ax=axes[4])
    axes[5].remove()
    path = eb.plot.save(fig, tmp_path / "latent.png")
    assert path.stat().st_size > 10_000
    ax = eb.plot.horn_surface(eb.energies.Horn(), grid, x_values=torch.linspace(0, 1, 5),
                              data=eb.data.horn(20))
    assert eb.plot.save(ax.figure, tmp_path / "horn.png").stat().st_size > 10_000
