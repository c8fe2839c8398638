"""eb.infer against a hand-written PyTorch Adam loop of the same math (issue 2's benchmark).

1,024 inputs x 32 starts, 200 Adam steps (lr 0.05), on a 2-D and a 16-D conditional MLPEnergy
and on the 8-mode GaussianMixture (unconditional: 32,768 starts). Both sides start from the same
points and run the same number of steps; the library's time includes merging the minima.
Also: early stopping on, the analytic-gradient path against autograd, and peak memory.
Usage: python benchmarks/bench_infer.py [--quick] [--memory]
"""

from __future__ import annotations

import sys

import torch

import ebmlab as eb

from common import compare, rss_growth_mb, with_threads, write

B, S, STEPS, LR = 1024, 32, 200, 0.05
QUICK = "--quick" in sys.argv
if QUICK:
    B, STEPS = 128, 50


def hand_loop(energy: eb.Energy, y0: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
    """What a user writes by hand: autograd for dF/dy and torch.optim.Adam on the points."""
    y = y0.clone().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=LR)
    for _ in range(STEPS):
        (g,) = torch.autograd.grad(energy.forward(y, x).sum(), y)
        y.grad = g
        opt.step()
    return y.detach()


def problems() -> list[tuple[str, eb.Energy, torch.Tensor | None, tuple[int, ...]]]:
    torch.manual_seed(0)
    out = []
    for d in (2, 16):
        energy = eb.energies.MLPEnergy(d, x_dim=d, hidden=(32, 32)).requires_grad_(False)
        out.append((f"MLPEnergy {d}-D (cond.)", energy, torch.randn(B, d), (d,)))
    gm = eb.energies.GaussianMixture.ring(8, radius=2.0, scale=0.3).requires_grad_(False)
    out.append(("GaussianMixture 8 modes", gm, None, (2,)))
    return out


def measure(name: str, energy: eb.Energy, x: torch.Tensor | None, shape: tuple[int, ...],
            threads: int) -> dict[str, object]:
    b, s = (B, S) if x is not None else (1, B * S)
    y0 = torch.randn(b, s, *shape, generator=torch.Generator().manual_seed(1))
    xr = None if x is None else x.repeat_interleave(s, 0)
    flat = y0.reshape(b * s, *shape)
    solver = eb.inference.Adam(lr=LR)

    def library(early: bool = False, target: eb.Energy = energy) -> eb.Inference:
        return eb.infer(target, x=x, init=y0, solver=solver, max_steps=STEPS,
                        early_stop=early, gtol=1e-4, ftol=1e-7)

    def hand() -> torch.Tensor:
        return hand_loop(energy, flat, xr)

    full = with_threads(threads, lambda: compare(library, hand, repeats=3))
    early = with_threads(threads, lambda: compare(lambda: library(True), hand, repeats=3))
    row: dict[str, object] = {
        "problem": name,
        "threads": threads,
        "hand loop (s)": full["baseline_s"],
        "eb.infer (s)": full["library_s"],
        "ratio": full["ratio"],
        "early-stop ratio": early["ratio"],
        "minima/input": float(library().count.float().mean()),
    }
    if isinstance(energy, eb.energies.GaussianMixture):
        autograd = eb.FunctionEnergy(energy.forward, y_shape=shape)  # gradient by autograd
        vs = with_threads(threads, lambda: compare(library, lambda: library(target=autograd),
                                                   repeats=3))
        row["analytic speed-up vs autograd"] = 1 / vs["ratio"]
    return row


def main() -> None:
    rows = []
    for threads in (1, 2):
        for name, energy, x, shape in problems():
            rows.append(measure(name, energy, x, shape, threads))
            print(rows[-1], flush=True)
    write(
        "infer",
        rows,
        ["problem", "threads", "hand loop (s)", "eb.infer (s)", "ratio", "early-stop ratio",
         "analytic speed-up vs autograd", "minima/input"],
        notes=(f"{B} inputs x {S} starts (GaussianMixture: {B * S} starts of one input), "
               f"{STEPS} Adam steps, lr {LR}, median of 3, order alternated. ratio = eb.infer "
               "(merging included, early stop off) / hand-written torch.optim.Adam loop; "
               "early-stop ratio: eb.infer with gtol=1e-4, ftol=1e-7 / the same hand loop. "
               "Targets: ratio <= 1.10; early-stop ratio < 1 where starts converge; analytic "
               "GaussianMixture >= 1.3x faster than autograd. Peak memory: `--memory`, table "
               "infer_memory."),
    )


def rss_child(index: int, kind: str) -> None:
    """In a fresh process: print the resident-set growth (MiB) of one run of ``kind``."""
    import sys as _sys

    torch.set_num_threads(1)
    name, energy, x, shape = problems()[index]
    b, s = (B, S) if x is not None else (1, B * S)
    y0 = torch.randn(b, s, *shape, generator=torch.Generator().manual_seed(1))
    xr = None if x is None else x.repeat_interleave(s, 0)
    flat = y0.reshape(b * s, *shape)
    small = eb.infer(energy, x=None if x is None else x[:2], init=y0[:2, :64], max_steps=2)
    del small  # warm-up of code paths at a tiny size
    if kind == "infer":
        fn = lambda: eb.infer(energy, x=x, init=y0, solver=eb.inference.Adam(lr=LR),  # noqa: E731
                              max_steps=STEPS, early_stop=False)
    else:
        fn = lambda: hand_loop(energy, flat, xr)  # noqa: E731
    print(rss_growth_mb(fn))
    _sys.stdout.flush()


def memory() -> None:
    """Peak memory of eb.infer and the hand loop, each in a fresh process (1 thread)."""
    import subprocess

    rows = []
    for i, (name, _, _, _) in enumerate(problems()):
        row: dict[str, object] = {"problem": name}
        for kind in ("infer", "hand"):
            out = subprocess.run([sys.executable, __file__, "--rss", str(i), kind],
                                 check=True, capture_output=True, text=True)
            row[f"peak MB ({kind})"] = float(out.stdout.split()[-1])
        rows.append(row)
        print(row, flush=True)
    write("infer_memory", rows, ["problem", "peak MB (infer)", "peak MB (hand)"],
          notes=(f"{B} inputs x {S} starts, {STEPS} Adam steps. Growth of the resident set "
                 "during one call, each in a fresh process after a tiny warm-up call."))


if __name__ == "__main__":
    if "--rss" in sys.argv:
        i = sys.argv.index("--rss")
        rss_child(int(sys.argv[i + 1]), sys.argv[i + 2])
    elif "--memory" in sys.argv:
        memory()
    else:
        main()
