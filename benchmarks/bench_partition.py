"""log Z estimators (issue 4's benchmark): error against wall time, and the grid's time/memory.

1. Error vs time: log Z of the 8-mode 2-D GaussianMixture (exact -log density: true log Z = 0,
   on [-4, 4]^2 the truncated mass is < 1e-20) and of a 10-D Gaussian with a rotated precision
   of eigenvalues 1..10 (closed form), by importance sampling and AIS at several budgets.
   Each budget is run with 5 seeds: RMSE over seeds, mean reported stderr, median wall time.
   IS uses the uniform proposal on the box in 2-D and N(0, I) in 10-D (the uniform box
   proposal is hopeless there); AIS its default uniform base in 2-D, the Gaussian base in 10-D.
2. Grid quadrature at 256^2 and 1024^2 cells (GaussianMixture) against a naive, unchunked
   hand-written computation (all points, one energy call, one logsumexp): time ratio at 1 and 2
   threads, and peak resident memory measured in fresh processes.
3. Issue 12: log Z of ManyWell-32 (16 independent pairs, log p = -x1^4 + 6 x1^2 + 0.5 x1 -
   x2^2 / 2; exact log Z = 164.6957 by 1-D quadrature, computed here with scipy) and of the
   10-D rotated Gaussian: error against energy evaluations (counted) and wall time for IS,
   AIS with random-walk and with gradient (MALA, HMC) transitions, and the reverse-AIS
   bounds; stderr coverage (|error| < 2 stderr) over 20 seeds; on the Gaussian, AIS with
   exact transitions (an oracle) as the reference of what the ladder allows; the sigmoid
   ladder against the adaptive one (equal thermodynamic length), MALA against GHMC
   (persistent momentum).
Usage: python benchmarks/bench_partition.py [--quick] [--only all|estimators|grid|issue12]
[--seeds N] [--gaussian-seeds N] [--problem "ManyWell-32"|"Gaussian 10-D"] [--rows TEXT]
(--problem re-runs one problem's rows of partition_issue12, --rows the rows whose label
contains TEXT, e.g. "pCNL"; every other row is kept from the existing
results/partition_issue12.json.)
"""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import time

import torch
from torch.distributions import Independent, Normal

import ebmlab as eb
from ebmlab.partition import AIS, Grid, Importance

from common import compare, rss_growth_mb, with_threads, write

QUICK = "--quick" in sys.argv
SEEDS = 3 if QUICK else 5
# Seeds of the issue-12 table (``--seeds N``; 20 by default, 4 with --quick).
ISSUE12_SEEDS = (int(sys.argv[sys.argv.index("--seeds") + 1]) if "--seeds" in sys.argv
                 else 4 if QUICK else 20)
# The Gaussian rows' seeds (cheap rows, whose ratios need more than 20 runs): 60 by default.
GAUSSIAN_SEEDS = (int(sys.argv[sys.argv.index("--gaussian-seeds") + 1])
                  if "--gaussian-seeds" in sys.argv else 4 if QUICK else 60)
# Only this problem's rows are re-run (the others are kept from the existing table).
PROBLEM = sys.argv[sys.argv.index("--problem") + 1] if "--problem" in sys.argv else None
# Only the rows whose label contains this text are re-run (``--rows``).
ROWS = sys.argv[sys.argv.index("--rows") + 1] if "--rows" in sys.argv else None


def gaussian_10d() -> tuple[eb.energies.Quadratic, float]:
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(10, 10, generator=g))
    eig = torch.logspace(0, 1, 10)
    energy = eb.energies.Quadratic(q @ torch.diag(eig) @ q.T)
    return energy.requires_grad_(False), energy.log_partition()


def estimator_rows() -> list[dict[str, object]]:
    gm = eb.energies.GaussianMixture.ring(8, radius=2.0, scale=0.2).requires_grad_(False)
    box = eb.Box([-4.0, -4.0], [4.0, 4.0])
    q10, truth10 = gaussian_10d()
    std10 = Independent(Normal(torch.zeros(10), torch.ones(10)), 1)
    is_budgets = (1_000, 10_000, 100_000)
    ais_budgets = ((64, 25), (128, 50), (256, 100)) if not QUICK else ((64, 25), (128, 50))
    cases = []
    for n in is_budgets:
        cases.append(("8 Gaussians 2-D", gm, box, 0.0, f"IS N={n}", n, Importance(n)))
        cases.append(("Gaussian 10-D", q10, None, truth10, f"IS N={n}", n,
                      Importance(n, proposal=std10)))
    for c, k in ais_budgets:
        evals = int(c * k * 2 * 1.25)  # init + step per temperature; pilot of C/4 chains
        cases.append(("8 Gaussians 2-D", gm, box, 0.0, f"AIS {c}x{k}", evals,
                      AIS(c, k, kernel="random_walk", schedule="sigmoid")))
        cases.append(("Gaussian 10-D", q10, None, truth10, f"AIS {c}x{k}", evals,
                      AIS(c, k, base="gaussian", num_steps=2, kernel="random_walk",
                          schedule="sigmoid")))
    rows = []
    for problem, energy, domain, truth, name, evals, estimator in cases:
        errors, stderrs, times, ess = [], [], [], []
        for seed in range(SEEDS):
            g = torch.Generator().manual_seed(seed)
            start = time.perf_counter()
            est = estimator.log_partition(energy, domain=domain, generator=g)
            times.append(time.perf_counter() - start)
            errors.append(est.value.item() - truth)
            stderrs.append(est.stderr.item())
            ess.append(est.ess.item())
        row = {
            "problem": problem,
            "estimator": name,
            "energy evals": evals,
            "time (s)": statistics.median(times),
            "RMSE": math.sqrt(sum(e * e for e in errors) / len(errors)),
            "mean stderr": statistics.mean(stderrs),
            "mean ESS": statistics.mean(ess),
        }
        rows.append(row)
        print(row, flush=True)
    return rows


def naive_log_z(energy: eb.Energy, box: eb.Box, num: int) -> torch.Tensor:
    """What a user writes by hand: every grid point at once, one logsumexp."""
    grid = box.grid(num)
    with torch.no_grad():
        return torch.logsumexp(-energy(grid.points), 0) + math.log(grid.cell_volume)


def _ring() -> tuple[eb.Energy, eb.Box]:
    gm = eb.energies.GaussianMixture.ring(8, radius=2.0, scale=0.2).requires_grad_(False)
    return gm, eb.Box([-4.0, -4.0], [4.0, 4.0])


def rss_child(kind: str, num: int) -> None:
    """In a fresh process: print the peak growth of resident memory (MiB) of one computation."""
    torch.set_default_dtype(torch.float64)
    gm, box = _ring()
    # Warm up both code paths at a tiny size: first calls allocate one-off buffers.
    Grid(num=8).log_partition(gm, domain=box)
    naive_log_z(gm, box, 8)
    if kind == "grid":
        print(rss_growth_mb(lambda: Grid(num=num).log_partition(gm, domain=box)))
    else:
        print(rss_growth_mb(lambda: naive_log_z(gm, box, num)))


def peak_rss_mb(kind: str, num: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--rss", kind, str(num)], check=True,
                         capture_output=True, text=True)
    return float(out.stdout.split()[-1])


def grid_rows() -> list[dict[str, object]]:
    gm, box = _ring()
    rows = []
    for threads in (1, 2):
        for num in (256, 1024):
            grid = Grid(num=num)

            def library(grid: Grid = grid) -> torch.Tensor:
                return grid.log_partition(gm, domain=box).value

            def baseline(num: int = num) -> torch.Tensor:
                return naive_log_z(gm, box, num)

            timing = with_threads(threads, lambda: compare(library, baseline, repeats=3))
            row = {
                "cells": f"{num}²",
                "threads": threads,
                "naive (s)": timing["baseline_s"],
                "eb grid (s)": timing["library_s"],
                "ratio": timing["ratio"],
                "|log Z|": abs(library().item()),
            }
            if threads == 1:
                row["peak MB (grid)"] = peak_rss_mb("grid", num)
                row["peak MB (naive)"] = peak_rss_mb("naive", num)
            rows.append(row)
            print(row, flush=True)
    return rows


class Counting(eb.Energy):
    """Counts the points at which the energy is evaluated (with or without its gradient)."""

    def __init__(self, energy: eb.Energy) -> None:
        super().__init__()
        self.energy, self.y_shape, self.n = energy, energy.y_shape, 0

    def forward(self, y: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        self.n += y.shape[0]
        return self.energy.forward(y, x)

    def energy_and_grad(self, y: torch.Tensor, x: torch.Tensor | None = None):
        self.n += y.shape[0]
        return self.energy.energy_and_grad(y, x)


def manywell(pairs: int = 16) -> tuple[eb.Energy, float]:
    """ManyWell-32 and its exact log Z (1-D quadrature of one double well, times 16)."""
    from scipy.integrate import quad

    def energy(y, x):
        a, b = y[:, 0::2], y[:, 1::2]
        return (a**4 - 6 * a**2 - 0.5 * a + 0.5 * b**2).sum(-1)

    def grad(y, x):
        g = torch.empty_like(y)
        a, b = y[:, 0::2], y[:, 1::2]
        g[:, 0::2] = 4 * a**3 - 12 * a - 0.5
        g[:, 1::2] = b
        return g

    z1 = quad(lambda t: math.exp(-(t**4) + 6 * t**2 + 0.5 * t), -10, 10, epsabs=0,
              epsrel=1e-13)[0]
    truth = pairs * (math.log(z1) + 0.5 * math.log(2 * math.pi))
    assert abs(truth - 164.6957) < 1e-3, truth
    return eb.FunctionEnergy(energy, grad_fn=grad, y_shape=(2 * pairs,)), truth


class Replicas(eb.Energy):
    """An unconditional energy given a dummy input: R identical inputs = R independent runs.

    AIS over inputs (B, 1) runs every input's chains, pilot tuning and reverse pass on its
    own, so its B estimates are B independent AIS runs, made in one batched pass.
    """

    def __init__(self, energy: eb.Energy) -> None:
        super().__init__()
        self.energy, self.y_shape, self.x_shape = energy, energy.y_shape, (1,)

    def forward(self, y: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return self.energy.forward(y)

    def energy_and_grad(self, y: torch.Tensor, x: torch.Tensor | None = None):
        return self.energy.energy_and_grad(y)


class ExactGaussianTransition:
    """An oracle AIS transition for a Gaussian target and the N(0, I) base: each step draws
    a fresh exact sample of the tempered target (precision (1 - t) I + t beta P).

    Not a method anyone could use on an unknown energy: it shows what the ladder itself
    allows, the error of AIS with perfect mixing at every temperature.
    """

    beta = 1.0

    def __init__(self, energy: eb.energies.Quadratic) -> None:
        self.precision, self.mean = energy.precision.detach(), energy.mean.detach()

    def init(self, y0: torch.Tensor, energy: eb.Energy, x: torch.Tensor | None = None):
        return eb.samplers.State(y0, energy.forward(y0, x), torch.zeros_like(y0))

    def step(self, state, energy, x=None, *, generator=None):
        t, beta = energy.t, energy.beta
        eye = torch.eye(self.precision.shape[0], dtype=self.precision.dtype)
        if isinstance(t, torch.Tensor):  # one temperature per row (schedule="adaptive")
            return self._step_rows(state, energy, x, generator, eye)
        prec = (1 - t) * eye + t * beta * self.precision
        chol = torch.linalg.cholesky(prec)
        mean = torch.linalg.solve(prec, t * beta * self.precision @ self.mean)
        z = torch.randn(state.position.shape, generator=generator, dtype=prec.dtype)
        y = torch.linalg.solve_triangular(chol.T, z.T, upper=True).T + mean
        return eb.samplers.State(y, energy.forward(y, x), torch.zeros_like(y)), None

    def _step_rows(self, state, energy, x, generator, eye):
        # The rows' temperatures take few distinct values (one per input): one factorisation
        # per value, then each row draws from its own tempered Gaussian.
        t, beta = energy.t, energy.beta
        values, which = torch.unique(t, return_inverse=True)
        prec = (1 - values)[:, None, None] * eye + (values * beta)[:, None, None] * self.precision
        chol = torch.linalg.cholesky(prec)  # (V, D, D)
        rhs = (values * beta)[:, None] * (self.precision @ self.mean)  # (V, D)
        mean = torch.linalg.solve(prec, rhs)
        z = torch.randn(state.position.shape, generator=generator, dtype=prec.dtype)
        lt = chol.transpose(1, 2)[which]  # (N, D, D), upper
        y = torch.linalg.solve_triangular(lt, z.unsqueeze(-1), upper=True).squeeze(-1)
        y = y + mean[which]
        return eb.samplers.State(y, energy.forward(y, x), torch.zeros_like(y)), None


def _replicates(estimator, counting, seeds: int, is_ais: bool):
    """(estimates, stderrs, lowers, uppers, evaluations per estimate) of ``seeds`` runs."""
    counting.n = 0
    if not is_ais:  # importance sampling: one run per seed (cheap)
        out = [estimator.log_partition(counting, generator=torch.Generator().manual_seed(s))
               for s in range(seeds)]
        return ([e.value.item() for e in out], [e.stderr.item() for e in out],
                [e.lower.item() for e in out if e.upper is not None],
                [e.upper.item() for e in out if e.upper is not None], counting.n // seeds)
    x = torch.zeros(seeds, 1)
    est = estimator.log_partition(Replicas(counting), x,
                                  generator=torch.Generator().manual_seed(1000))
    lowers = est.lower.tolist() if est.upper is not None else []
    uppers = est.upper.tolist() if est.upper is not None else []
    return est.value.tolist(), est.stderr.tolist(), lowers, uppers, counting.n // seeds


def issue12_cases(scale: int) -> dict[str, tuple]:
    """The issue-12 problems: (energy, truth, seeds, [(label, estimator)]) by name."""
    mw, truth_mw = manywell()
    q10, truth10 = gaussian_10d()
    wide32 = Independent(Normal(torch.zeros(32), 2.0 * torch.ones(32)), 1)
    std10 = Independent(Normal(torch.zeros(10), torch.ones(10)), 1)
    sig = {"schedule": "sigmoid"}
    ada = {"schedule": "adaptive"}
    gauss = {"base": "gaussian", "bidirectional": True}
    k100 = 100 // scale
    return {
        "ManyWell-32": (mw, truth_mw, ISSUE12_SEEDS, [
            ("IS N=100000", Importance(100_000 // scale, proposal=wide32)),
            ("AIS RW 256x1700", AIS(256, 1700 // scale, base=wide32, kernel="random_walk",
                                    bidirectional=True, **sig)),
            # At this budget a longer ladder beats more chains (10 runs: RMSE 0.45 at
            # 128 x 3400 against 0.78 at 256 x 1700).
            ("AIS MALA 128x3400", AIS(128, 3400 // scale, base=wide32, kernel="mala",
                                      bidirectional=True, **sig)),
            ("AIS HMC(3) 128x1150", AIS(128, 1150 // scale, base=wide32, kernel="hmc",
                                        bidirectional=True, **sig)),
            ("AIS MALA 128x3400 adaptive", AIS(128, 3400 // scale, base=wide32, kernel="mala",
                                               bidirectional=True, **ada)),
            ("AIS HMC(3) 128x1150 adaptive", AIS(128, 1150 // scale, base=wide32,
                                                 kernel="hmc", bidirectional=True, **ada)),
            ("AIS GHMC 0.5 128x3400 adaptive", AIS(128, 3400 // scale, base=wide32,
                                                   kernel="ghmc", bidirectional=True, **ada)),
            ("AIS pCNL 128x3400 adaptive", AIS(128, 3400 // scale, base=wide32, kernel="pcnl",
                                               bidirectional=True, **ada)),
        ]),
        "Gaussian 10-D": (q10, truth10, GAUSSIAN_SEEDS, [
            ("IS N=100000", Importance(100_000 // scale, proposal=std10)),
            ("AIS RW 256x200", AIS(256, 200 // scale, num_steps=2, kernel="random_walk",
                                   **gauss, **sig)),
            ("AIS MALA 256x200", AIS(256, 200 // scale, num_steps=2, kernel="mala", **gauss,
                                     **sig)),
            ("AIS HMC(3) 256x67", AIS(256, 67 // scale, num_steps=2, kernel="hmc", **gauss,
                                      **sig)),
            # The other split of the same budget: 4x the chains, 1 step per temperature.
            ("AIS RW 1024x100 1 step", AIS(1024, k100, kernel="random_walk", **gauss, **sig)),
            ("AIS MALA 1024x100 1 step", AIS(1024, k100, kernel="mala", **gauss, **sig)),
            # The adaptive ladder alone, the persistent momentum alone, both.
            ("AIS RW 1024x100 1 step adaptive", AIS(1024, k100, kernel="random_walk", **gauss,
                                                    **ada)),
            ("AIS MALA 1024x100 1 step adaptive", AIS(1024, k100, kernel="mala", **gauss,
                                                      **ada)),
            ("AIS MALA 70 % 1024x100 1 step adaptive", AIS(1024, k100, kernel="mala",
                                                           target_acceptance=0.7,
                                                           **gauss, **ada)),
            ("AIS GHMC 0.5 1024x100 1 step", AIS(1024, k100, kernel="ghmc", **gauss, **sig)),
            ("AIS GHMC 0.5 1024x100 1 step adaptive", AIS(1024, k100, kernel="ghmc", **gauss,
                                                         **ada)),
            ("AIS GHMC 0.9 1024x100 1 step adaptive", AIS(1024, k100, kernel="ghmc",
                                                         momentum=0.9, **gauss, **ada)),
            # pCNL around the pilot's Gaussian fit, towards 70 % (the kernel's default) / 90 %.
            ("AIS pCNL 256x200 adaptive", AIS(256, 200 // scale, num_steps=2, kernel="pcnl",
                                              **gauss, **ada)),
            ("AIS pCNL 1024x100 1 step adaptive", AIS(1024, k100, kernel="pcnl", **gauss,
                                                      **ada)),
            ("AIS pCNL 90 % 1024x100 1 step adaptive", AIS(1024, k100, kernel="pcnl",
                                                           target_acceptance=0.9, **gauss,
                                                           **ada)),
            ("AIS pCNL 95 % 1024x100 1 step adaptive", AIS(1024, k100, kernel="pcnl",
                                                           target_acceptance=0.95, **gauss,
                                                           **ada)),
            ("AIS pCNL 97 % 1024x100 1 step adaptive", AIS(1024, k100, kernel="pcnl",
                                                           target_acceptance=0.97, **gauss,
                                                           **ada)),
            # Reference, not a usable method: exact draws of every tempered Gaussian.
            ("AIS exact transitions 256x200", AIS(256, 200 // scale, num_steps=2,
                                                  kernel=ExactGaussianTransition(q10),
                                                  **gauss)),
            ("AIS exact transitions 1024x100 1 step",
             AIS(1024, k100, kernel=ExactGaussianTransition(q10), **gauss)),
            ("AIS exact transitions 1024x100 1 step adaptive",
             AIS(1024, k100, kernel=ExactGaussianTransition(q10), **gauss, **ada)),
        ]),
    }


def issue12_rows() -> list[dict[str, object]]:
    problems = issue12_cases(4 if QUICK else 1)
    old = {}
    if PROBLEM is not None or ROWS is not None:  # keep the rows not re-run
        import json

        from common import RESULTS

        table = json.loads((RESULTS / "partition_issue12.json").read_text())["rows"]
        old = {(r["problem"], r["estimator"]): r for r in table}
    rows = []
    for problem, (energy, truth, seeds, cases) in problems.items():
        for label, estimator in cases:
            if ((PROBLEM is not None and problem != PROBLEM)
                    or (ROWS is not None and ROWS not in label)):
                if (problem, label) in old:
                    rows.append(old[(problem, label)])
                continue
            is_ais = isinstance(estimator, AIS)
            counting = Counting(energy)
            # The time of one estimate: one unbatched run (seed 0).
            start = time.perf_counter()
            estimator.log_partition(counting, generator=torch.Generator().manual_seed(0))
            seconds = time.perf_counter() - start
            values, stderrs, lowers, uppers, evals = _replicates(estimator, counting, seeds,
                                                                 is_ais)
            errors = [v - truth for v in values]
            row = {
                "problem": problem, "estimator": label, "seeds": seeds,
                "energy evals": evals,
                "time (s)": seconds,
                "RMSE": math.sqrt(sum(e * e for e in errors) / seeds),
                "mean stderr": statistics.mean(stderrs),
                "coverage 2 se": sum(abs(e) < 2 * s for e, s in zip(errors, stderrs,
                                                                  strict=True)) / seeds,
                "lower - truth": statistics.mean(lowers) - truth if lowers else None,
                "upper - truth": statistics.mean(uppers) - truth if uppers else None,
            }
            rows.append(row)
            print(row, flush=True)
    return rows


def main_issue12() -> None:
    torch.set_default_dtype(torch.float64)
    write(
        "partition_issue12",
        with_threads(1, issue12_rows),
        ["problem", "estimator", "seeds", "energy evals", "time (s)", "RMSE", "mean stderr",
         "coverage 2 se", "lower - truth", "upper - truth"],
        notes=("log Z error against energy evaluations (counted: every point evaluated, "
               "with or without its gradient, pilot and reverse pass included) and wall "
               "time over 'seeds' independent runs (RMSE over 20 runs has ~16 % relative "
               "error, over 60 ~9 %), 1 thread, float64. The AIS runs are "
               "made in one batched pass over that many identical dummy inputs (AIS tunes its "
               "pilot, runs its chains and its reverse pass per input, so each input is an "
               "independent run); importance sampling runs once per seed; time (s) is that "
               "of one unbatched run (seed 0). ManyWell-32: exact "
               "log Z = 164.6957 (scipy quad); base/proposal N(0, 2^2 I). Gaussian 10-D: "
               "rotated precision, eigenvalues 1..10, base N(0, I), 2 steps per "
               "temperature. Ladders: the sigmoid schedule unless the row says 'adaptive' "
               "(equal thermodynamic length, measured in the pilot run: the default since "
               "the seventh session). AIS MALA: gradient transitions preconditioned "
               "by the particle spread, step tuned per temperature in a pilot run "
               "(towards 57.4 %, or the % given); RW the "
               "pilot-tuned random walk; HMC(3): kernel='hmc', 3 leapfrog steps, tuned "
               "towards 65 %; GHMC a: kernel='ghmc', one leapfrog step per AIS step with "
               "the momentum carried over and refreshed partly (persistence a), tuned "
               "towards 80 %. pCNL: kernel='pcnl', preconditioned Crank-Nicolson Langevin "
               "around the pilot's Gaussian fit (particle mean and shrunk covariance) at each "
               "temperature, pooled over the 21 nearest pilot steps reweighted to it (since "
               "the eleventh session), delta tuned towards 70 % (or the % given), capped at "
               "2. "
               "'1 step': one transition per temperature (4x the chains, half "
               "the ladder: the same budget split otherwise). 'exact transitions' is a "
               "reference, not a usable method: each step draws an exact sample of the "
               "tempered Gaussian (perfect mixing), the error the ladder and chain count "
               "allow (its evaluations: F at the start and after every draw; the adaptive "
               "row adds its pilot run of 256 chains). "
               "lower/upper: the mean over seeds of the reverse-AIS "
               "bracket (mean forward log weight, minus mean reverse log weight; reverse "
               "chains from the forward chains resampled). coverage: share of seeds with "
               "|error| < 2 stderr (0.95 if honest). Targets: AIS gradient within 0.5 nats "
               "on ManyWell-32 at <= 1e6 evaluations; >= 5x less error than RW AIS at equal "
               "evaluations on the 10-D Gaussian."),
    )


def main() -> None:
    torch.set_default_dtype(torch.float64)
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else "all"
    if only == "issue12":
        main_issue12()
        return
    if only == "grid":
        write_grid()
        return
    rows = with_threads(1, estimator_rows)
    write(
        "partition_estimators",
        rows,
        ["problem", "estimator", "energy evals", "time (s)", "RMSE", "mean stderr", "mean ESS"],
        notes=(f"log Z error against wall time, {SEEDS} seeds per budget, 1 thread, float64. "
               "8 Gaussians: ring of radius 2, sd 0.2, on [-4, 4]², true log Z = 0; "
               "Gaussian 10-D: rotated precision with eigenvalues 1..10 on all of R^10, "
               "closed form. IS: uniform proposal (2-D) / N(0, I) (10-D). AIS: C chains x K "
               "temperatures, sigmoid schedule, pilot-tuned random-walk Metropolis, 8 runs; "
               "uniform base (2-D) / N(0, I) base with 2 steps per temperature (10-D). "
               "'energy evals' counts evaluations of one point. An honest stderr is close "
               "to the RMSE."),
    )
    if only == "all":
        write_grid()
        main_issue12()


def write_grid() -> None:
    write(
        "partition_grid",
        grid_rows(),
        ["cells", "threads", "naive (s)", "eb grid (s)", "ratio", "|log Z|", "peak MB (grid)",
         "peak MB (naive)"],
        notes=("Grid quadrature of log Z for the 8-mode GaussianMixture on [-4, 4]² against a "
               "hand-written unchunked computation (all points, one logsumexp). The library "
               "streams chunks of 65,536 points (log Z alone; Gibbs's single pass also "
               "accumulates the mean, variance and mean energy). Median of 3, order "
               "alternated. Peak MB: peak growth of the resident memory of a fresh process "
               "during one computation (sampled every ms). Target: memory bounded "
               "independently of the resolution."),
    )


if __name__ == "__main__":
    if "--rss" in sys.argv:
        i = sys.argv.index("--rss")
        rss_child(sys.argv[i + 1], int(sys.argv[i + 2]))
    else:
        main()
