"""eb.infer against a hand-written PyTorch Adam loop of the same math (issue 2's benchmark).

1,024 inputs x 32 starts, 200 Adam steps (lr 0.05), on a 2-D and a 16-D conditional MLPEnergy
and on the 8-mode GaussianMixture (unconditional: 32,768 starts). Both sides start from the same
points and run the same number of steps; the library's time includes merging the minima.
Also: early stopping on, the analytic-gradient path against autograd, and peak memory.
Usage: python benchmarks/bench_infer.py [--quick] [--memory] [--scipy] [--compile [--repeats N]]

``--scipy`` (issue 11): eb.infer with its defaults against scipy.optimize multi-start L-BFGS-B
with deduplication, on the same starts, for landscapes with known minima: minima found,
spurious and duplicate minima, position error and wall time (1 thread, the load noted).
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable

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


def _landscapes() -> list[dict[str, object]]:
    """Test landscapes with their known minima (float64), boxes and start counts."""
    import math

    import numpy as np
    from scipy.optimize import brentq
    from scipy.optimize import minimize as sp_minimize

    out: list[dict[str, object]] = []

    def himmelblau(y: torch.Tensor) -> torch.Tensor:
        a, b = y[..., 0], y[..., 1]
        return (a**2 + b - 11) ** 2 + (a + b**2 - 7) ** 2

    hb = [(3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126)]
    out.append({"name": "Himmelblau (4 minima)", "fn": himmelblau, "low": [-5.0] * 2,
                "high": [5.0] * 2, "truth": torch.tensor(hb, dtype=torch.float64), "starts": 256})

    def camel(y: torch.Tensor) -> torch.Tensor:
        a, b = y[..., 0], y[..., 1]
        return (4 - 2.1 * a**2 + a**4 / 3) * a**2 + a * b + (-4 + 4 * b**2) * b**2

    out.append({"name": "six-hump camel (6 minima)", "fn": camel, "low": [-3.0, -2.0],
                "high": [3.0, 2.0], "truth": None, "starts": 256})

    def rastrigin(y: torch.Tensor) -> torch.Tensor:
        return (10 + y**2 - 10 * torch.cos(2 * math.pi * y)).sum(-1)

    roots = [brentq(lambda t: 2 * t + 20 * math.pi * math.sin(2 * math.pi * t), k - 0.3, k + 0.3)
             if k else 0.0 for k in range(-2, 3)]
    grid = torch.tensor(list(__import__("itertools").product(roots, repeat=3)))
    out.append({"name": "Rastrigin 3-D (125 minima)", "fn": rastrigin, "low": [-2.5] * 3,
                "high": [2.5] * 3, "truth": grid.double(), "starts": 1024})

    def well(y: torch.Tensor) -> torch.Tensor:
        return ((y**2 - 1) ** 2).sum(-1)

    corners = torch.tensor(list(__import__("itertools").product([-1.0, 1.0], repeat=10)))
    out.append({"name": "double well 10-D (1024 minima)", "fn": well, "low": [-2.0] * 10,
                "high": [2.0] * 10, "truth": corners.double(), "starts": 4096,
                # Gradient flow keeps each coordinate's sign: the basin of a start is its orthant.
                "start_basins": lambda y0: int(torch.unique(torch.sign(y0), dim=0).shape[0]),
                "auto": True})

    def rosen(y: torch.Tensor) -> torch.Tensor:
        return (100 * (y[..., 1:] - y[..., :-1] ** 2) ** 2 + (1 - y[..., :-1]) ** 2).sum(-1)

    local = sp_minimize(lambda v: float(rosen(torch.tensor(v))), np.array(
        [-0.96, 0.94, 0.88, 0.78, 0.61]), method="BFGS", tol=1e-14).x
    out.append({"name": "Rosenbrock 5-D (2 minima)", "fn": rosen, "low": [-2.0] * 5,
                "high": [2.0] * 5, "truth": torch.tensor(np.stack([np.ones(5), local])),
                "starts": 256})
    for d in (10, 50):
        g = torch.Generator().manual_seed(d)
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
        lam = torch.logspace(0, 4, d, dtype=torch.float64)
        a = (q * lam) @ q.T
        mu = torch.rand(d, generator=g, dtype=torch.float64) * 2 - 1

        def quad(y: torch.Tensor, a: torch.Tensor = a, mu: torch.Tensor = mu) -> torch.Tensor:
            r = y - mu
            return 0.5 * ((r @ a) * r).sum(-1)

        out.append({"name": f"quadratic {d}-D, kappa 1e4", "fn": quad, "low": [-3.0] * d,
                    "high": [3.0] * d, "truth": mu[None], "starts": 256})
    return out


def _score(found: torch.Tensor, truth: torch.Tensor, tol: float) -> dict[str, object]:
    """Match found minima to the true ones: found, spurious, duplicates, max position error."""
    dist = torch.cdist(found, truth)  # (K, T)
    near, which = dist.min(1)
    ok = near <= tol
    hit = which[ok]
    return {
        "found": int(hit.unique().numel()),
        "spurious": int((~ok).sum()),
        "duplicates": int(hit.numel() - hit.unique().numel()),
        "max error": float(near[ok].max()) if bool(ok.any()) else float("nan"),
    }


def _scipy_multistart(fn: object, y0: torch.Tensor, low: list[float], high: list[float],
                      tol: float) -> torch.Tensor:
    """What a user writes with scipy: L-BFGS-B from every start, then greedy deduplication."""
    import numpy as np
    from scipy.optimize import minimize as sp_minimize

    def fg(v: np.ndarray) -> tuple[float, np.ndarray]:
        t = torch.tensor(v, requires_grad=True)
        e = fn(t)
        (g,) = torch.autograd.grad(e, t)
        return float(e.detach()), g.numpy()

    ends, energies = [], []
    bounds = list(zip(low, high, strict=True))
    for v in y0.numpy():
        r = sp_minimize(fg, v, jac=True, method="L-BFGS-B", bounds=bounds)
        ends.append(r.x)
        energies.append(r.fun)
    pts = torch.tensor(np.stack(ends))
    keep: list[int] = []
    for i in np.argsort(energies):
        if all(float((pts[i] - pts[j]).norm()) > tol for j in keep):
            keep.append(int(i))
    return pts[keep]


def scipy_comparison() -> None:
    """eb.infer (defaults) against scipy multi-start L-BFGS-B on the same starts, 1 thread."""
    import os
    import time

    import numpy as np

    torch.set_num_threads(1)
    load = os.getloadavg()
    rows = []
    for case in _landscapes():
        fn, low, high, s = case["fn"], case["low"], case["high"], int(case["starts"])
        if QUICK:
            s = min(s, 256)
        f64 = torch.float64
        box = eb.Box(torch.tensor(low, dtype=f64), torch.tensor(high, dtype=f64))
        energy = eb.FunctionEnergy(lambda y, x, fn=fn: fn(y), y_shape=(len(low),))
        y0 = box.sample(s, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        tol = 1e-3 * box.diameter
        t0 = time.perf_counter()
        res = eb.infer(energy, init=y0, domain=box)
        t_eb = time.perf_counter() - t0
        t0 = time.perf_counter()
        sp = _scipy_multistart(fn, y0, low, high, tol)
        t_sp = time.perf_counter() - t0
        truth = case["truth"]
        if truth is None:  # six-hump camel: the union of both answers, polished
            truth = torch.cat([res.minima(0), sp])
            keep = []
            for i in range(truth.shape[0]):
                if all(float((truth[i] - truth[j]).norm()) > 1e-3 for j in keep):
                    keep.append(i)
            truth = truth[keep]
            assert np.isfinite(truth.numpy()).all()
        mine, theirs = _score(res.minima(0), truth, 10 * tol), _score(sp, truth, 10 * tol)
        row: dict[str, object] = {"problem": case["name"], "starts": s,
                                  "true minima": int(truth.shape[0])}
        for who, sc, t in (("eb", mine, t_eb), ("scipy", theirs, t_sp)):
            row[f"found ({who})"] = sc["found"]
            row[f"spurious/dup ({who})"] = f"{sc['spurious']}/{sc['duplicates']}"
            row[f"max error ({who})"] = sc["max error"]
            row[f"time s ({who})"] = t
        row["speed-up"] = t_sp / t_eb
        row["unconverged (eb)"] = int(res.num_unconverged[0])
        if "start_basins" in case:
            row["start basins"] = case["start_basins"](y0)
        rows.append(row)
        print(row, flush=True)
        if case.get("auto"):
            rows.append(_auto_row(case, energy, box, truth, 10 * tol))
            print(rows[-1], flush=True)
    write(
        "infer_vs_scipy",
        rows,
        ["problem", "starts", "true minima", "start basins", "found (eb)", "found (scipy)",
         "spurious/dup (eb)", "spurious/dup (scipy)", "max error (eb)", "max error (scipy)",
         "time s (eb)", "time s (scipy)", "speed-up", "unconverged (eb)"],
        notes=(f"eb.infer with its defaults (Hybrid solver, basin merge, second-order check) "
               "against scipy.optimize.minimize(method='L-BFGS-B', jac=True, bounds=box) from "
               "every start plus greedy deduplication at merge_tol = 1e-3 x box diameter, the "
               "same float64 starts, 1 thread. A minimum is found when a reported point lies "
               "within 10 x merge_tol of it; spurious = reported points near no true minimum. "
               "start basins: the true minima whose basin of attraction (under gradient flow) "
               "holds at least one of the starts, where it is known (10-D well: the distinct "
               "orthants of the starts), i.e. the most a descent that stays in its start's "
               "basin can find; scipy's L-BFGS-B line searches jump from basin to basin and "
               "may land in a few more, or fewer. num_starts='auto': eb.infer draws its own "
               "starts (seeded) in doubling rounds until the Good-Turing unseen probability is "
               "below 0.01 (no scipy run on those starts). "
               f"Shared machine: load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} "
               "(1/5/15 min) at the start; times are wall times of one run."),
    )


def _auto_row(case: dict[str, object], energy: eb.Energy, box: eb.Box, truth: torch.Tensor,
              tol: float) -> dict[str, object]:
    """eb.infer with num_starts="auto" (its own seeded starts) on a landscape of ``case``."""
    import time

    t0 = time.perf_counter()
    res = eb.infer(energy, num_starts="auto", domain=box, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(0))
    t_eb = time.perf_counter() - t0
    used = int(res.hits.sum() + res.num_unconverged.sum() + res.num_diverged.sum())
    sc = _score(res.minima(0), truth, tol)
    return {"problem": f"{case['name']}, num_starts='auto'", "starts": used,
            "true minima": int(truth.shape[0]), "found (eb)": sc["found"],
            "spurious/dup (eb)": f"{sc['spurious']}/{sc['duplicates']}",
            "max error (eb)": sc["max error"], "time s (eb)": t_eb,
            "unconverged (eb)": int(res.num_unconverged[0])}


def _paired(fast: Callable[[], object], slow: Callable[[], object], repeats: int,
            merge_s: list[float]) -> dict[str, object]:
    """Time ``fast`` and ``slow`` in interleaved pairs (order alternated, one warm-up each).

    Per pair: wall and CPU (process) time of each side, the eager merge inside each run
    (``merge_s`` is reset before and read after every run), and the pair's ratio, so the
    spread of the ratio over the pairs shows what the machine's load did to it.
    """
    import time

    fast()
    slow()
    runs: dict[str, list[list[float]]] = {"fast": [], "slow": []}
    for i in range(repeats):
        pair = [("fast", fast), ("slow", slow)]
        for side, fn in pair if i % 2 == 0 else pair[::-1]:
            merge_s[0] = 0.0
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            runs[side].append([time.perf_counter() - wall, time.process_time() - cpu,
                               merge_s[0]])
    f, sl = runs["fast"], runs["slow"]
    wall = [b[0] / a[0] for a, b in zip(f, sl, strict=True)]
    cpu = [b[1] / a[1] for a, b in zip(f, sl, strict=True)]
    solve = [(b[0] - b[2]) / (a[0] - a[2]) for a, b in zip(f, sl, strict=True)]

    def med(rows: list[list[float]], k: int) -> float:
        return statistics.median(r[k] for r in rows)

    return {"eager (s)": med(sl, 0), "compile=True (s)": med(f, 0),
            "speed-up": statistics.median(wall),
            "speed-up range": f"{min(wall):.2f}-{max(wall):.2f}",
            "CPU speed-up": statistics.median(cpu), "merge (s)": med(f, 2),
            "solve speed-up": statistics.median(solve)}


def compile_comparison(repeats: int = 7) -> None:
    """``--compile`` (issue 18): eb.infer(compile=True) against eager on the MLP problems.

    The 1,024 x 32 benchmark (200 Adam steps, early stop off, then early stop on), both sides
    from the same starts; the first compiled call (the compilation) is timed on its own and
    left out. Then ``repeats`` interleaved pairs of eager and compiled calls (order
    alternated, after one warm-up of each): the speed-up is the median of the pairs' ratios
    and its range the smallest and largest (the load on a shared machine moves single
    figures by +-25 %); the CPU speed-up is the same on process time, which other processes
    disturb less. The eager merge (``assemble``, the same on both sides) is timed inside every
    run, and ``solve speed-up`` is the median ratio with it taken out.
    """
    import os
    import time

    infer_module = sys.modules["ebmlab.inference.infer"]
    assemble = infer_module.assemble
    merge_s = [0.0]

    def timed_assemble(*args: object, **kwargs: object) -> object:
        start = time.perf_counter()
        out = assemble(*args, **kwargs)
        merge_s[0] += time.perf_counter() - start
        return out

    rows = []
    infer_module.assemble = timed_assemble
    try:
        for name, energy, x, shape in problems()[:2]:
            y0 = torch.randn(B, S, *shape, generator=torch.Generator().manual_seed(1))
            solver = eb.inference.Adam(lr=LR)

            def run(is_compiled: bool, early: bool, target: eb.Energy = energy,
                    x: torch.Tensor = x, y0: torch.Tensor = y0,
                    solver: eb.inference.Adam = solver) -> eb.Inference:
                return eb.infer(target, x=x, init=y0, solver=solver, max_steps=STEPS,
                                early_stop=early, gtol=1e-4, ftol=1e-7, compile=is_compiled)

            def first_call(early: bool) -> float:
                start = time.perf_counter()
                run(True, early)
                return time.perf_counter() - start

            for early in (False, True):
                first = with_threads(1, lambda early=early: first_call(early))
                eager = run(False, early)
                fast = run(True, early)
                diff = float((eager.best - fast.best).abs().max())
                timing = with_threads(1, lambda early=early: _paired(
                    lambda: run(True, early), lambda: run(False, early), repeats, merge_s))
                row = {"problem": name, "early stop": early, **timing,
                       "first call (s)": first, "max |best diff|": diff,
                       "same counts": int((eager.count == fast.count).sum())}
                rows.append(row)
                print(row, flush=True)
    finally:
        infer_module.assemble = assemble
    load = os.getloadavg()
    write(
        "infer_compile_quick" if QUICK else "infer_compile",  # a smoke run keeps the table
        rows,
        ["problem", "early stop", "eager (s)", "compile=True (s)", "speed-up",
         "speed-up range", "CPU speed-up", "merge (s)", "solve speed-up", "first call (s)",
         "max |best diff|", "same counts"],
        notes=(f"{B} inputs x {S} starts, {STEPS} Adam steps (lr {LR}), 1 thread; {repeats} "
               "interleaved pairs of eager and compiled calls (order alternated) after one "
               "warm-up call each; times include the eager merge. speed-up = the median over "
               "the pairs of eager / compiled wall time, range = the smallest and largest "
               "pair; CPU speed-up = the same on process time; merge = the eager merge "
               "(assemble) in the compiled run, the same work on both sides; solve speed-up "
               "= the median speed-up with each side's merge taken out; first call = the "
               "compilation plus one run; same counts = inputs "
               f"(of {B}) whose number of minima agrees. Target (issue 18): speed-up >= 1.5 "
               "on the 1,024 x 32 MLP. "
               f"Load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at the end."),
    )


if __name__ == "__main__":
    if "--scipy" in sys.argv:
        scipy_comparison()
    elif "--compile" in sys.argv:
        reps = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 7
        compile_comparison(reps)
    elif "--rss" in sys.argv:
        i = sys.argv.index("--rss")
        rss_child(int(sys.argv[i + 1]), sys.argv[i + 2])
    elif "--memory" in sys.argv:
        memory()
    else:
        main()
