"""ebmlab against the peer libraries, a hand-written loop and a compiled hand-written loop.

The same work in one process, one thread, same energies, starts and random streams:

- Langevin (h = 0.01, beta = 1) at 10,000 chains and at 256 chains on the analytic 8-mode
  ``GaussianMixture.ring`` and on a 2-128-128-1 SiLU ``MLPEnergy`` (autograd gradient);
- HMC, 10,000 chains, 5 leapfrog steps of 0.1 per transition;
- one CD-10 training step of the MLP (Langevin negatives from the data, Adam);
- compiled: ``eb.sample(..., compile=True)`` against a ``torch.compile``d hand-written step of
  the same math (random numbers drawn eagerly outside it, the same stream), Langevin, MALA
  (h = 0.01) and HMC on the mixture at 10,000 chains; ``ratio`` is over the compiled hand
  loop there, and the eager ebmlab run is listed for the speed-up. The compilation (~20 s
  per step function on a CPU) happens in the warm-up call and is not timed. The same at 1,000
  chains for Langevin and MALA, where the per-call overhead dominates: ebmlab runs 8 steps per
  compiled call (``ebmlab.samplers.loop.BLOCK_GRADIENTS``), the hand loop one.

Peers: TorchEBM (``torchebm``) and ebmkit (module ``ebm``), installed with ``--no-deps`` so the
pinned torch is never replaced (``make bench-peers`` builds that environment). A peer that is not
installed is reported as missing, not skipped silently. Every row checks that its output agrees
with ebmlab's (the largest absolute difference of the final states; the same noise stream is used
where the peer takes a generator or draws from the global one). Each library uses the gradient it
offers: ebmlab and TorchEBM the closed form on the mixture (TorchEBM through ``gradient``), ebmkit
autograd (it has no analytic-gradient hook).

The figures are chain-steps per second (median of ``--repeats`` runs); ``ratio`` is the time of a
row over the hand-written eager loop (lower is faster). Steps are fewer than 200/1,000 per run
(``--steps``): the per-step cost is constant along a chain.

Run: ``python benchmarks/bench_peers.py [--repeats N] [--quick] [--only compiled]``.
"""

from __future__ import annotations

import argparse
import importlib
import math
import statistics
import time
import warnings
from collections.abc import Callable

import torch

import ebmlab as eb

from common import hand_step, write

H, HMC_EPS, LEAPFROG = 0.01, 0.1, 5


def peer(name: str) -> object | None:
    """Import a peer library, or None when it is not installed."""
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time of ``fn`` after one warm-up call, and its last output."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


# --- energies -------------------------------------------------------------------------------


def mixture() -> eb.Energy:
    return eb.energies.GaussianMixture.ring(8, radius=2.0, scale=0.3)


def mlp() -> eb.Energy:
    torch.manual_seed(0)
    return eb.energies.MLPEnergy(2, hidden=(128, 128))


def autograd_grad(energy: eb.Energy, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        y = y.detach().requires_grad_(True)
        e = energy.forward(y)
        (g,) = torch.autograd.grad(e.sum(), y)
    return e.detach(), g


def gradient_fn(energy: eb.Energy, analytic: bool) -> Callable:
    if analytic:
        return lambda y: energy.energy_and_grad(y)
    return lambda y: autograd_grad(energy, y)


# --- hand-written loops of the same math ----------------------------------------------------


def hand_langevin(
    grad: Callable, y: torch.Tensor, steps: int, gen: torch.Generator
) -> torch.Tensor:
    scale = math.sqrt(2 * H)
    g = grad(y)[1]
    for _ in range(steps):
        y = y - H * g + scale * torch.randn(y.shape, generator=gen, dtype=y.dtype)
        g = grad(y)[1]
    return y


def compiled_langevin(energy: eb.Energy, analytic: bool) -> Callable:
    """A torch.compile'd Langevin step of the same math (noise drawn outside, eagerly)."""
    scale = math.sqrt(2 * H)
    grad = gradient_fn(energy, analytic)

    def step(y: torch.Tensor, g: torch.Tensor, noise: torch.Tensor) -> tuple:
        y = y - H * g + scale * noise
        return y, grad(y)[1]

    compiled = torch.compile(step, dynamic=False) if analytic else step

    def run(y: torch.Tensor, steps: int, gen: torch.Generator) -> torch.Tensor:
        g = grad(y)[1]
        for _ in range(steps):
            noise = torch.randn(y.shape, generator=gen, dtype=y.dtype)
            y, g = compiled(y, g, noise)
        return y

    return run


def hand_hmc(grad: Callable, y: torch.Tensor, steps: int, gen: torch.Generator) -> torch.Tensor:
    e, g = grad(y)
    for _ in range(steps):
        p = torch.randn(y.shape, generator=gen, dtype=y.dtype)
        h0 = e + 0.5 * (p * p).sum(-1)
        yn, pn, gn = y, p - 0.5 * HMC_EPS * g, g
        for i in range(LEAPFROG):
            yn = yn + HMC_EPS * pn
            en, gn = grad(yn)
            pn = pn - (0.5 if i == LEAPFROG - 1 else 1.0) * HMC_EPS * gn
        h1 = en + 0.5 * (pn * pn).sum(-1)
        u = torch.rand(h0.shape, generator=gen, dtype=y.dtype)
        accept = u.log() < (h0 - h1)
        y = torch.where(accept[:, None], yn, y)
        e = torch.where(accept, en, e)
        g = torch.where(accept[:, None], gn, g)
    return y


def compiled_hand(kind: str, energy: eb.Energy) -> Callable:
    """A torch.compile'd hand-written Langevin, MALA or HMC step (draws made outside, eagerly,
    in ebmlab's order: noise then uniform, momenta then uniform)."""
    grad = energy.energy_and_grad
    step = torch.compile(hand_step(kind, grad, h=H, eps=HMC_EPS, num_leapfrog=LEAPFROG),
                         dynamic=False)

    def run(y: torch.Tensor, steps: int, gen: torch.Generator) -> torch.Tensor:
        e, g = grad(y)
        for _ in range(steps):
            noise = torch.randn(y.shape, generator=gen, dtype=y.dtype)
            u = (torch.rand(y.shape[:1], generator=gen, dtype=y.dtype) if kind != "langevin"
                 else noise)
            y, e, g = step(y, e, g, noise, u)
        return y

    return run


def compiled_rows(kind: str, chains: int, steps: int, repeats: int) -> list[dict[str, object]]:
    """ebmlab compile=True, the compiled hand loop and eager ebmlab on the same work."""
    energy = mixture()
    y0 = torch.randn(chains, 2, generator=torch.Generator().manual_seed(1))
    kernel = {
        "langevin": lambda: eb.samplers.Langevin(H),
        "mala": lambda: eb.samplers.MALA(H, target_acceptance=None),
        "hmc": lambda: eb.samplers.HMC(HMC_EPS, num_leapfrog=LEAPFROG, target_acceptance=None),
    }[kind]()

    def ebmlab_run(compile: bool) -> Callable:
        return lambda y, n, g: eb.sample(energy, y, kernel, n, generator=g, keep="last",
                                         compile=compile).samples[-1]

    candidates = {
        "ebmlab compile=True": ebmlab_run(True),
        "compiled hand loop": compiled_hand(kind, energy),
        "ebmlab eager": ebmlab_run(False),
    }
    task = f"compiled {kind} mixture {chains}"
    results = {}
    for name, run in candidates.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            t, out = median_time(
                lambda run=run: run(y0, steps, torch.Generator().manual_seed(7)), repeats
            )
        results[name] = (t, out, time.perf_counter() - start - (repeats * t))
    base_t = results["compiled hand loop"][0]
    ref = results["ebmlab eager"][1]
    rows = []
    for name, (t, out, first) in results.items():
        rows.append({
            "task": task, "library": name, "chain_steps_per_s": chains * steps / t,
            "seconds": first, "ratio": t / base_t,
            "max_abs_diff": float((out - ref).abs().max()),
            "note": "seconds = first call (compilation)" if name != "ebmlab eager" else "",
        })
    return rows


# --- the peers -----------------------------------------------------------------------------


def torchebm_model(energy: eb.Energy, analytic: bool) -> object:
    core = importlib.import_module("torchebm.core")

    class Wrapped(core.BaseModel):
        def __init__(self) -> None:
            super().__init__(dtype=torch.get_default_dtype())
            self.inner = energy

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner.forward(x)

        if analytic:

            def gradient(self, x: torch.Tensor, model_kwargs: dict | None = None) -> torch.Tensor:
                return self.inner.energy_and_grad(x)[1]

    return Wrapped()


def torchebm_langevin(energy: eb.Energy, analytic: bool) -> Callable:
    samplers = importlib.import_module("torchebm.samplers")
    sampler = samplers.LangevinDynamics(
        torchebm_model(energy, analytic), step_size=H, noise_scale=1.0,
        dtype=torch.get_default_dtype(),
    )
    return lambda y, steps, gen: sampler.sample(x=y, n_steps=steps, generator=gen)


def torchebm_hmc(energy: eb.Energy, analytic: bool) -> Callable:
    samplers = importlib.import_module("torchebm.samplers")
    sampler = samplers.HamiltonianMonteCarlo(
        torchebm_model(energy, analytic), step_size=HMC_EPS, n_leapfrog_steps=LEAPFROG,
        dtype=torch.get_default_dtype(),
    )
    return lambda y, steps, gen: sampler.sample(x=y, n_steps=steps, generator=gen)


def ebmkit_langevin(energy: eb.Energy) -> Callable:
    ebm = importlib.import_module("ebm")
    sampler = ebm.LangevinDynamics(step_size=H)

    def run(y: torch.Tensor, steps: int, gen: torch.Generator) -> torch.Tensor:
        torch.manual_seed(int(gen.initial_seed()))  # ebmkit draws from the global stream
        return sampler.sample(energy.forward, y, steps=steps)

    return run


def ebmkit_hmc(energy: eb.Energy) -> Callable:
    ebm = importlib.import_module("ebm")
    sampler = ebm.HMC(step_size=HMC_EPS, leapfrog_steps=LEAPFROG)

    def run(y: torch.Tensor, steps: int, gen: torch.Generator) -> torch.Tensor:
        torch.manual_seed(int(gen.initial_seed()))
        return sampler.sample(energy.forward, y, steps=steps)

    return run


# --- rows ----------------------------------------------------------------------------------


def sampling_rows(
    task: str, energy: eb.Energy, analytic: bool, chains: int, steps: int, repeats: int
) -> list[dict[str, object]]:
    seed = 7
    y0 = torch.randn(chains, 2, generator=torch.Generator().manual_seed(1))
    grad = gradient_fn(energy, analytic)
    is_hmc = task.startswith("hmc")
    if is_hmc:
        kernel = eb.samplers.HMC(HMC_EPS, num_leapfrog=LEAPFROG, target_acceptance=None)
        candidates: dict[str, Callable | None] = {
            "hand loop": lambda y, n, g: hand_hmc(grad, y, n, g),
        }
    else:
        kernel = eb.samplers.Langevin(H)
        candidates = {
            "hand loop": lambda y, n, g: hand_langevin(grad, y, n, g),
            "compiled hand loop": compiled_langevin(energy, analytic) if analytic else None,
        }

    def ebmlab_run(y: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
        return eb.sample(energy, y, kernel, n, generator=g, thin=n).samples[-1]

    candidates = {"ebmlab": ebmlab_run, **candidates}
    if peer("torchebm") is not None:
        candidates["TorchEBM"] = (torchebm_hmc if is_hmc else torchebm_langevin)(energy, analytic)
    else:
        candidates["TorchEBM"] = None
    if peer("ebm") is not None:
        candidates["ebmkit"] = (ebmkit_hmc if is_hmc else ebmkit_langevin)(energy)
    else:
        candidates["ebmkit"] = None

    results: dict[str, tuple[float, torch.Tensor]] = {}
    rows = []
    for name, run in candidates.items():
        if run is None:
            reason = "not installed" if name in ("TorchEBM", "ebmkit") else "autograd energy"
            rows.append({"task": task, "library": name, "note": reason})
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t, out = median_time(
                lambda run=run: run(y0, steps, torch.Generator().manual_seed(seed)), repeats
            )
        results[name] = (t, out)
    base_t = results["hand loop"][0]
    ref = results["ebmlab"][1]
    for name, (t, out) in results.items():
        rows.append({
            "task": task, "library": name,
            "chain_steps_per_s": chains * steps / t,
            "ratio": t / base_t,
            "max_abs_diff": float((out - ref).abs().max()),
        })
    return rows


def cd_rows(repeats: int) -> list[dict[str, object]]:
    """One CD-10 step of the MLP: eb.fit (one step per call) against a hand-written step."""
    data = eb.data.eight_gaussians(4096, generator=torch.Generator().manual_seed(0))
    batch = 256

    def hand(model: eb.Energy, opt: torch.optim.Optimizer, gen: torch.Generator) -> None:
        idx = torch.randint(0, data.shape[0], (batch,), generator=gen)
        pos = data[idx]
        neg = hand_langevin(gradient_fn(model, False), pos, 10, gen)
        loss = model(pos).mean() - model(neg.detach()).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    def library(model: eb.Energy, opt: torch.optim.Optimizer, gen: torch.Generator) -> None:
        eb.fit(model, data, "contrastive_divergence", optimizer=opt, num_steps=1,
               batch_size=batch, negatives=eb.training.negatives.Sampled(10, H, init="data"),
               generator=gen, progress=False)

    rows = []
    for name, fn in (("ebmlab eb.fit", library), ("hand loop", hand)):
        model = mlp()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        try:
            t, _ = median_time(
                lambda fn=fn, model=model, opt=opt: fn(
                    model, opt, torch.Generator().manual_seed(3)
                ),
                repeats,
            )
        except Exception as err:  # noqa: BLE001 - report the row, keep the table
            rows.append({"task": "cd10 step (MLP)", "library": name, "note": f"failed: {err}"})
            continue
        rows.append({"task": "cd10 step (MLP)", "library": name, "seconds": t})
    times = {r["library"]: r.get("seconds") for r in rows}
    if times.get("hand loop") and times.get("ebmlab eb.fit"):
        for r in rows:
            r["ratio"] = r["seconds"] / times["hand loop"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--only", choices=["eager", "compiled"], default=None,
                        help="run only the eager rows or only the compiled rows")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    big, small, mid = (1000, 64, 128) if args.quick else (10_000, 256, 1000)
    s_big, s_small, s_hmc, s_mid = (5, 20, 2, 16) if args.quick else (50, 300, 10, 160)
    rows: list[dict[str, object]] = []
    if args.only != "compiled":
        for label, energy, analytic in (("mixture", mixture(), True), ("MLP", mlp(), False)):
            rows += sampling_rows(f"langevin {label} {big}", energy, analytic, big, s_big,
                                  args.repeats)
            rows += sampling_rows(f"langevin {label} {small}", energy, analytic, small,
                                  s_small, args.repeats)
        rows += sampling_rows(f"hmc mixture {big}", mixture(), True, big, s_hmc, args.repeats)
        rows += cd_rows(args.repeats)
    if args.only != "eager":
        for kind, n in (("langevin", s_big), ("mala", s_big), ("hmc", s_hmc)):
            rows += compiled_rows(kind, big, n, args.repeats)
        # Small batches, where the per-call overhead dominates: 8 steps per compiled call.
        for kind in ("langevin", "mala"):
            rows += compiled_rows(kind, mid, s_mid, args.repeats)
    versions = {name: getattr(peer(mod), "__version__", "?") if peer(mod) else "missing"
                for name, mod in (("torchebm", "torchebm"), ("ebmkit", "ebm"))}
    load = open("/proc/loadavg").read().split()[0]
    write(
        "peers_quick" if args.quick else "peers",  # a smoke run never replaces the table
        rows,
        ["task", "library", "chain_steps_per_s", "seconds", "ratio", "max_abs_diff", "note"],
        notes=(f"1 thread, float32, torch {torch.__version__}; peers {versions}; load average "
               f"{load} at the end. ratio = time / hand-written eager loop (lower is faster); "
               f"in the compiled rows, time / compiled hand-written loop."),
    )


if __name__ == "__main__":
    main()
