"""eb.sample eager / compiled / CUDA-graph on CUDA at 10^4-10^6 chains against hand-written loops.

One prepared script for a GPU machine: it refuses to run without CUDA (exit status 2 and a
message), times each case with ``torch.cuda.synchronize`` around it (medians of ``--repeats``
runs after a warm-up call, which holds the compilation), and writes ``results/gpu.{json,md}``
with the device named. Every side does the same math from the same starts on the same device,
with the random numbers drawn eagerly in the same order (outputs are checked to agree):

- Langevin: y' = y - h grad F(y) + sqrt(2h) xi; MALA: the same proposal, Metropolis accept;
  HMC: NUM_LEAPFROG leapfrog steps of size EPS, Metropolis accept; no adaptation; only the
  last state is kept (``keep="last"``), so the figures are the cost of the steps.
- ebmlab in three modes: eager, ``compile=True`` and ``compile="cuda-graph"``; the baselines
  are a hand-written eager loop and the same step under ``torch.compile``; ``ratio`` is the
  time over the compiled hand-written loop (lower is faster).
- ``GB/s`` is the achieved bandwidth of a minimal traffic model (per chain and step, the
  state y, F, grad F read and written once and the random numbers written and read once:
  what a fully fused step must move) and ``of_device`` its fraction of the device's copy
  bandwidth, measured in the same run by a 1 GiB device-to-device copy.
- eb.infer (Adam, MLP): eager and, when ``eb.infer`` takes ``compile=``, compiled, against a
  hand-written Adam loop.

Energies: GaussianMixture.ring(8) (closed form) at every size, and a 2->128->128->1 SiLU
MLPEnergy (autograd gradient) at the largest size, float32. Compilations are many (one per
step function, mode and size): ``--budget-s`` (default 540) stops adding rows when it is
spent, and whatever was measured is written.

Run: ``python benchmarks/bench_gpu.py [--sizes 10000,100000,1000000] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import torch

import ebmlab as eb

from common import hand_step as common_hand_step
from common import write

NUM_STEPS, H, EPS, NUM_LEAPFROG, STEPS, LR, STARTS = 100, 0.01, 0.1, 5, 100, 0.05, 32
MODES = {"eager": False, "compiled": True, "cuda-graph": "cuda-graph"}


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """Median time of ``fn`` over ``repeats`` runs, the warm-up call's time, the last output."""
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), first, out


def copy_bandwidth(device: torch.device) -> float:
    """Bytes per second of a 1 GiB device-to-device copy (read + write counted; 16 MiB on CPU)."""
    a = torch.empty(1 << (28 if device.type == "cuda" else 22), dtype=torch.float32,
                    device=device)
    b = torch.empty_like(a)
    b.copy_(a)
    t, _, _ = median_time(lambda: b.copy_(a), 5)
    return 2 * a.numel() * a.element_size() / t


def grad_of(energy: eb.Energy, autograd: bool) -> Callable[[torch.Tensor], tuple]:
    if not autograd:
        return lambda y: energy.energy_and_grad(y)

    def eg(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            y = y.detach().requires_grad_(True)
            e = energy.forward(y)
            (g,) = torch.autograd.grad(e.sum(), y)
        return e.detach(), g

    return eg


def hand_step(kind: str, eg: Callable) -> Callable:
    """One step of the same math as ebmlab's kernel, its random numbers given."""
    return common_hand_step(kind, eg, h=H, eps=EPS, num_leapfrog=NUM_LEAPFROG)


def hand_loop(kind: str, eg: Callable, compiled: bool) -> Callable:
    step = hand_step(kind, eg)
    if compiled:
        step = torch.compile(step, dynamic=False)

    def run(y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        e, g = eg(y)
        for _ in range(NUM_STEPS):
            noise = torch.randn(y.shape, generator=gen, dtype=y.dtype, device=y.device)
            u = noise if kind == "langevin" else torch.rand(
                y.shape[:1], generator=gen, dtype=y.dtype, device=y.device)
            y, e, g = step(y, e, g, noise, u)
        return y

    return run


def kernel_of(kind: str) -> object:
    return {
        "langevin": lambda: eb.samplers.Langevin(H),
        "mala": lambda: eb.samplers.MALA(H, target_acceptance=None),
        "hmc": lambda: eb.samplers.HMC(EPS, NUM_LEAPFROG, target_acceptance=None),
    }[kind]()


def bytes_per_chain_step(kind: str, dim: int, itemsize: int) -> int:
    """The minimal traffic model: state (y, F, grad F) read + written, draws written + read."""
    draws = dim + (0 if kind == "langevin" else 1)
    return itemsize * (2 * (2 * dim + 1) + 2 * draws)


def sampling_rows(label: str, energy: eb.Energy, autograd: bool, kind: str, n: int,
                  device: torch.device, repeats: int, peak: float) -> list[dict[str, object]]:
    eg = grad_of(energy, autograd)
    y0 = torch.randn(n, 2, device=device, generator=torch.Generator(device).manual_seed(1))
    kernel = kernel_of(kind)
    runs: dict[str, Callable[[], torch.Tensor]] = {}
    for mode, flag in MODES.items():
        runs[f"ebmlab {mode}"] = lambda flag=flag: eb.sample(
            energy, y0, kernel, NUM_STEPS, keep="last", compile=flag,
            generator=torch.Generator(device).manual_seed(2)).samples[-1]
    for name, compiled in (("hand loop", False), ("compiled hand loop", True)):
        loop = hand_loop(kind, eg, compiled)
        runs[name] = lambda loop=loop: loop(y0, torch.Generator(device).manual_seed(2))
    timed = {}
    for name, fn in runs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            timed[name] = median_time(fn, repeats)
    base = timed["compiled hand loop"][0]
    ref = timed["ebmlab eager"][2]
    rows = []
    for name, (t, first, out) in timed.items():
        rate = n * NUM_STEPS / t
        bandwidth = rate * bytes_per_chain_step(kind, 2, 4)
        rows.append({
            "case": f"sample {kind}", "energy": label, "chains": n, "side": name,
            "seconds": t, "first_call_s": first, "chain_steps_per_s": rate,
            "GB/s": bandwidth / 1e9, "of_device": bandwidth / peak, "ratio": t / base,
            "max_abs_diff": float((out - ref).abs().max()),
        })
        print(rows[-1], flush=True)
    return rows


def adam_loop(energy: eb.Energy, y0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    y = y0.clone().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=LR)
    for _ in range(STEPS):
        (g,) = torch.autograd.grad(energy.forward(y, x).sum(), y)
        y.grad = g
        opt.step()
    return y.detach()


def infer_rows(n: int, device: torch.device, repeats: int) -> list[dict[str, object]]:
    """eb.infer, B inputs x 32 starts = n starts, Adam STEPS steps, early stop off."""
    b = n // STARTS
    mlp = eb.energies.MLPEnergy(2, x_dim=2, hidden=(128, 128)).to(device).float()
    mlp.requires_grad_(False)
    x = torch.randn(b, 2, device=device)
    y0 = torch.randn(b, STARTS, 2, device=device)
    flat, xr = y0.reshape(b * STARTS, 2), x.repeat_interleave(STARTS, 0)
    solver = eb.inference.Adam(lr=LR)
    sides: dict[str, Callable[[], object]] = {"hand loop": lambda: adam_loop(mlp, flat, xr)}
    flags = {"eager": False}
    if "compile" in inspect.signature(eb.infer).parameters:
        flags["compiled"] = True
    for mode, flag in flags.items():
        kwargs = {"compile": flag} if flag else {}
        sides[f"ebmlab {mode}"] = lambda kwargs=kwargs: eb.infer(
            mlp, x, init=y0, solver=solver, max_steps=STEPS, early_stop=False, **kwargs)
    timed = {}
    for name, fn in sides.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            timed[name] = median_time(fn, repeats)
    base = timed["hand loop"][0]
    rows = []
    for name, (t, first, _out) in timed.items():
        rows.append({"case": f"infer Adam {STEPS} steps", "energy": "MLPEnergy 2+2-128-128-1",
                     "chains": b * STARTS, "side": name, "seconds": t, "first_call_s": first,
                     "chain_steps_per_s": b * STARTS * STEPS / t, "ratio": t / base})
        print(rows[-1], flush=True)
    return rows


def set_recompile_limit(limit: int) -> None:
    """One step function is compiled per mode, size and energy: raise dynamo's limit."""
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(config, name):
            setattr(config, name, limit)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="comma-separated chain counts (the MLP runs at the largest)")
    parser.add_argument("--kernels", default="langevin,mala,hmc")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=540.0,
                        help="stop adding rows after this many seconds")
    parser.add_argument("--device", default="cuda",
                        help="cuda (default); cpu only to smoke-test the script, no results file")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_gpu.py needs a CUDA device (torch.cuda.is_available() is False); "
              "run it on a GPU machine.", file=sys.stderr)
        return 2
    start = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    set_recompile_limit(64)
    torch.manual_seed(0)
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = args.kernels.split(",")
    peak = copy_bandwidth(device)
    print(f"{name}: device-to-device copy {peak / 1e9:.0f} GB/s", flush=True)
    gm = eb.energies.GaussianMixture.ring(8, radius=2.0, scale=0.3).to(device).float()
    mlp = eb.energies.MLPEnergy(2, hidden=(128, 128)).to(device).float().requires_grad_(False)
    cases = [("GaussianMixture ring(8)", gm, False, kind, n) for n in sizes for kind in kinds]
    cases += [("MLPEnergy 2-128-128-1", mlp, True, kind, max(sizes)) for kind in kinds]
    rows: list[dict[str, object]] = []
    for label, energy, autograd, kind, n in cases:
        if time.perf_counter() - start > args.budget_s:
            print(f"budget of {args.budget_s:.0f} s spent: skipping {kind} {label} {n}",
                  flush=True)
            continue
        rows += sampling_rows(label, energy, autograd, kind, n, device, args.repeats, peak)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if time.perf_counter() - start <= args.budget_s:
        rows += infer_rows(max(sizes), device, args.repeats)
    if device.type != "cuda":
        return 0  # a smoke run: figures from the CPU do not belong in results/gpu
    notes = (f"Device: {name} (CUDA {torch.version.cuda}), device-to-device copy "
             f"{peak / 1e9:.0f} GB/s. float32; {NUM_STEPS} sampler steps, Langevin/MALA "
             f"h={H}, HMC eps={EPS} x {NUM_LEAPFROG} leapfrog, keep='last'; infer {STEPS} "
             f"Adam steps lr {LR}, early stop off. ratio = time / compiled hand-written loop "
             f"(infer: / hand-written Adam loop); median of {args.repeats} after a warm-up "
             f"(first_call_s, which holds the compilation). GB/s: minimal traffic model "
             f"(see the script); of_device: its fraction of the copy bandwidth.")
    write("gpu", rows, ["case", "energy", "chains", "side", "seconds", "first_call_s",
                        "chain_steps_per_s", "GB/s", "of_device", "ratio", "max_abs_diff"],
          notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
