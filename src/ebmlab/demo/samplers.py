"""Demo section: Langevin, MALA, HMC and NUTS on a multi-modal landscape, against the truth."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch

import ebmlab as eb
from ebmlab.demo.progress import advance

__all__ = ["run", "STEPS"]

STEPS = 6  # five samplers, then the density figure
# Replica exchange on the same base kernel: the hot replicas cross the barriers between the
# ring's modes (about 3 nats at beta = 1), swaps carry those moves down to beta = 1.
_BETAS = [1.0, 0.5, 0.25, 0.12, 0.06]
# Kernels without an accept step: an acceptance rate would read 1.00 and say nothing.
_NO_ACCEPT_STEP = ("Langevin",)


def run(out: Path, quick: bool) -> list[str]:
    """Draw chains on the 8-Gaussians landscape and samples against the exact density."""
    gen = torch.Generator().manual_seed(0)
    energy = eb.energies.GaussianMixture.ring(8, radius=2.0, scale=0.3)
    box = eb.Box([-3.2, -3.2], [3.2, 3.2])
    num_chains, num_steps, burn_in = (128, 100, 50) if quick else (1024, 1000, 300)
    kernels = {
        "Langevin": eb.samplers.Langevin(0.02),
        "MALA": eb.samplers.MALA(0.05),
        "HMC": eb.samplers.HMC(0.2, 4 if quick else 8),
        "NUTS": eb.samplers.NUTS(0.2, max_tree_depth=4 if quick else 8),
        "PT(MALA)": eb.samplers.ParallelTempering(eb.samplers.MALA(0.05), _BETAS),
    }
    # NUTS pays for the deepest tree of the batch at every step: fewer steps in quick mode.
    nuts_steps = (40, 20) if quick else (300, 150)
    y0 = box.sample(num_chains, generator=gen)
    shown = min(300, num_steps)
    fig, axes = eb.plot.subplots(3, 2, title=f"8-Gaussians ring: last {shown} steps of 4 chains"
                                 "\n(o: the same starts for every sampler, ★: ends)", size=3.4)
    rows, results, warned = [], {}, {}
    for ax, (name, kernel) in zip(axes, kernels.items(), strict=False):
        start = time.perf_counter()
        steps, warm = nuts_steps if name == "NUTS" else (num_steps, burn_in)
        # The untempered chains stay in the modes they start in, and eb.sample says so with a
        # SamplerWarning: the demo reports it in its table rather than on stderr.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", eb.SamplerWarning)
            chain = eb.sample(energy, y0, kernel, steps, burn_in=warm, generator=gen)
        seconds = time.perf_counter() - start
        warned[name] = any(issubclass(w.category, eb.SamplerWarning) for w in caught)
        results[name] = chain
        summary = chain.summary()
        eb.plot.chains(chain, energy, domain=box, ax=ax, num=50 if quick else 160, starts=y0,
                       last=shown)
        accept = ("no accept step" if name in _NO_ACCEPT_STEP
                  else f"acceptance {summary['acceptance_rate']:.2f}")
        ax.set_title(f"{name}: {accept}, R-hat {summary['r_hat_max']:.2f}", fontsize=9)
        advance(name)
        # The mixture has log Z = 0 and equal weights: the fraction of samples nearest each
        # mode should be 1/8; its worst deviation shows how well the chains mix between modes.
        nearest = torch.cdist(chain.samples.flatten(0, 1), energy.means.detach()).argmin(-1)
        share = torch.bincount(nearest, minlength=8).double() / nearest.numel()
        rate = None if name in _NO_ACCEPT_STEP else summary["acceptance_rate"]
        rows.append((name, rate, summary["ess_min"] / seconds,
                     summary["r_hat_max"], float((share - 0.125).abs().max()), seconds,
                     "yes" if warned[name] else "no"))
    eb.plot.swap_rates(results["PT(MALA)"], _BETAS, ax=axes[-1])
    eb.plot.save(fig, out / "samplers_chains.png")

    fig, axes = eb.plot.subplots(2, title="MALA samples against the exact Gibbs density")
    eb.plot.histogram_vs_exact(results["MALA"], energy, domain=box, bins=30 if quick else 60,
                               axes=(axes[0], axes[1]))
    eb.plot.save(fig, out / "samplers_density.png")
    advance("done")

    lines = [f"{'sampler':<10}{'accept':>8}{'ESS/s':>10}{'R-hat':>8}{'mode err':>10}"
             f"{'time (s)':>10}{'warned':>8}"]
    lines += [f"{n:<10}{'-' if a is None else f'{a:.2f}':>8}{e:>10.0f}{r:>8.3f}{m:>10.3f}"
              f"{t:>10.2f}{w:>8}" for n, a, e, r, m, t, w in rows]
    lines.append(f"({num_chains} chains x {num_steps} steps after {burn_in} burn-in (NUTS "
                 f"{nuts_steps[0]} after {nuts_steps[1]}); mode err: max |share of samples "
                 "nearest a mode - 1/8|; Langevin has no accept step; warned: eb.sample raised a "
                 "SamplerWarning for R-hat > 1.01 (without tempering the chains stay in the modes "
                 f"they start in); PT(MALA): replica exchange at betas {_BETAS})")
    return lines
