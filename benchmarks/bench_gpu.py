"""eb.sample (Langevin, HMC) and eb.infer on CUDA at 10^6 chains against hand-written loops.

One prepared script for a GPU machine: it refuses to run without CUDA (exit status 2 and a
message), times each case with ``torch.cuda.synchronize`` around it (medians of REPEATS runs,
library and loop alternated, after a warm-up), and writes ``results/gpu.{json,md}`` with the
device named. Both sides do the same math from the same starts on the same device:

- Langevin: y' = y - h grad F(y) + sqrt(2h) xi, NUM_STEPS steps, every step kept.
- HMC: NUM_LEAPFROG leapfrog steps of size EPS, Metropolis accept, no step-size adaptation.
- infer: 31,250 inputs x 32 starts = 10^6 starts, STEPS Adam steps (lr 0.05), early stop off;
  the library's time includes merging the minima.

Energies: GaussianMixture.ring(8) (closed-form gradient) and a 2->128->128->1 SiLU MLPEnergy
(autograd gradient), float32.

Run: ``python benchmarks/bench_gpu.py [--chains N] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable

import torch

import ebmlab as eb

from common import write

NUM_STEPS, H, EPS, NUM_LEAPFROG, STEPS, LR, STARTS = 100, 0.01, 0.1, 5, 100, 0.05, 32


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def cuda_time(fn: Callable[[], object]) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def compare(library: Callable[[], object], loop: Callable[[], object],
            repeats: int) -> dict[str, float]:
    library()
    loop()
    lib, hand = [], []
    for i in range(repeats):
        pair = [(library, lib), (loop, hand)]
        for fn, store in pair if i % 2 == 0 else pair[::-1]:
            store.append(cuda_time(fn))
    lib_s, hand_s = statistics.median(lib), statistics.median(hand)
    return {"library_s": lib_s, "loop_s": hand_s, "ratio": lib_s / hand_s}


def grad_of(energy: eb.Energy, autograd: bool) -> Callable[[torch.Tensor], tuple]:
    if not autograd:
        return lambda y: energy.energy_and_grad(y)

    def eg(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = y.detach().requires_grad_(True)
        e = energy.forward(y)
        (g,) = torch.autograd.grad(e.sum(), y)
        return e.detach(), g

    return eg


def langevin_loop(eg: Callable, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    scale = math.sqrt(2 * H)
    g = eg(y)[1]
    out = torch.empty((NUM_STEPS, *y.shape), dtype=y.dtype, device=y.device)
    for t in range(NUM_STEPS):
        y = y - H * g + scale * torch.randn(y.shape, generator=gen, dtype=y.dtype,
                                            device=y.device)
        g = eg(y)[1]
        out[t] = y
    return out


def hmc_loop(eg: Callable, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    e, g = eg(y)
    out = torch.empty((NUM_STEPS, *y.shape), dtype=y.dtype, device=y.device)
    for t in range(NUM_STEPS):
        p = torch.randn(y.shape, generator=gen, dtype=y.dtype, device=y.device)
        k0 = 0.5 * (p * p).sum(-1)
        yp, gp = y, g
        p = p - 0.5 * EPS * gp
        for i in range(NUM_LEAPFROG):
            yp = yp + EPS * p
            ep, gp = eg(yp)
            p = p - (0.5 * EPS if i == NUM_LEAPFROG - 1 else EPS) * gp
        log_r = e - ep + k0 - 0.5 * (p * p).sum(-1)
        u = torch.rand(log_r.shape, generator=gen, dtype=y.dtype, device=y.device)
        acc = u < log_r.clamp(max=0).exp()
        y = torch.where(acc[:, None], yp, y)
        e = torch.where(acc, ep, e)
        g = torch.where(acc[:, None], gp, g)
        out[t] = y
    return out


def adam_loop(energy: eb.Energy, y0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    y = y0.clone().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=LR)
    for _ in range(STEPS):
        (g,) = torch.autograd.grad(energy.forward(y, x).sum(), y)
        y.grad = g
        opt.step()
    return y.detach()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chains", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda",
                        help="cuda (default); cpu only to smoke-test the script, no results file")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_gpu.py needs a CUDA device (torch.cuda.is_available() is False); "
              "run it on a GPU machine.", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    torch.manual_seed(0)
    n = args.chains
    rows = []
    energies = {
        "GaussianMixture ring(8)": (eb.energies.GaussianMixture.ring(8, radius=2.0, scale=0.3),
                                    False),
        "MLPEnergy 2-128-128-1": (eb.energies.MLPEnergy(2, hidden=(128, 128)), True),
    }
    for label, (energy, autograd) in energies.items():
        energy = energy.to(device).float().requires_grad_(False)
        eg = grad_of(energy, autograd)
        y0 = torch.randn(n, 2, device=device, generator=torch.Generator(device).manual_seed(1))
        for kernel, sampler, loop in (
            ("Langevin", eb.samplers.Langevin(H), langevin_loop),
            ("HMC", eb.samplers.HMC(EPS, NUM_LEAPFROG, target_acceptance=None), hmc_loop),
        ):
            def library(sampler: object = sampler, energy: eb.Energy = energy,
                        y0: torch.Tensor = y0) -> object:
                gen = torch.Generator(device).manual_seed(2)
                return eb.sample(energy, y0, sampler, NUM_STEPS, generator=gen)

            def hand(loop: Callable = loop, eg: Callable = eg, y0: torch.Tensor = y0) -> object:
                return loop(eg, y0, torch.Generator(device).manual_seed(2))

            r = compare(library, hand, args.repeats)
            rate = n * NUM_STEPS / r["library_s"]
            rows.append({"case": f"sample {kernel}", "energy": label, "chains": n, **r,
                         "chain_steps_per_s": rate})
            print(rows[-1], flush=True)
            torch.cuda.empty_cache()
    # infer: conditional MLP, B inputs x 32 starts = n starts.
    b = n // STARTS
    mlp = eb.energies.MLPEnergy(2, x_dim=2, hidden=(128, 128)).to(device).float()
    mlp.requires_grad_(False)
    x = torch.randn(b, 2, device=device)
    y0 = torch.randn(b, STARTS, 2, device=device)
    flat = y0.reshape(b * STARTS, 2)
    xr = x.repeat_interleave(STARTS, 0)
    solver = eb.inference.Adam(lr=LR)
    r = compare(lambda: eb.infer(mlp, x, init=y0, solver=solver, max_steps=STEPS,
                                 early_stop=False),
                lambda: adam_loop(mlp, flat, xr), args.repeats)
    rows.append({"case": f"infer Adam {STEPS} steps", "energy": "MLPEnergy 2+2-128-128-1",
                 "chains": b * STARTS, **r, "chain_steps_per_s": b * STARTS * STEPS
                 / r["library_s"]})
    print(rows[-1], flush=True)
    if device.type != "cuda":
        return 0  # a smoke run: figures from the CPU do not belong in results/gpu
    notes = (f"Device: {name} (CUDA {torch.version.cuda}). float32; {NUM_STEPS} sampler steps, "
             f"Langevin h={H}, HMC eps={EPS} x {NUM_LEAPFROG} leapfrog; infer {STEPS} Adam steps "
             f"lr {LR}, early stop off. ratio = library / hand-written loop (median of "
             f"{args.repeats}, alternated, after a warm-up).")
    write("gpu", rows, ["case", "energy", "chains", "library_s", "loop_s", "ratio",
                        "chain_steps_per_s"], notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
