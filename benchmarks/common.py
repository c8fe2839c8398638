"""Shared benchmark harness: timing with medians, thread control, JSON + markdown output.

Every benchmark runs the library and a hand-written PyTorch baseline of the same math in the
same process, alternating their order, and reports medians and the ratio library/baseline.
"""

from __future__ import annotations

import json
import math
import platform
import resource
import statistics
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """A one-line description of the machine the figures come from."""
    return (
        f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, python {platform.python_version()}"
    ).replace("  ", " ")


def timeit(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time in seconds of ``fn()`` over ``repeats`` runs after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(
    library: Callable[[], object],
    baseline: Callable[[], object],
    repeats: int = 5,
    warmup: int = 1,
) -> dict[str, float]:
    """Time ``library`` and ``baseline`` alternately; return medians and their ratio.

    ``ratio_of_min`` is the ratio of the fastest runs: on a shared machine the minimum is the
    least disturbed figure.
    """
    for _ in range(warmup):
        library()
        baseline()
    lib, base = [], []
    for i in range(repeats):
        pair = [(library, lib), (baseline, base)]
        for fn, store in pair if i % 2 == 0 else pair[::-1]:
            start = time.perf_counter()
            fn()
            store.append(time.perf_counter() - start)
    lib_s, base_s = statistics.median(lib), statistics.median(base)
    return {"library_s": lib_s, "baseline_s": base_s, "ratio": lib_s / base_s,
            "ratio_of_min": min(lib) / min(base)}


def rss_mb() -> float:
    """The resident set size of this process (MiB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def rss_growth_mb(fn: Callable[[], object], interval: float = 0.001) -> float:
    """Peak growth of the resident set (MiB) while ``fn()`` runs, sampled by a thread.

    Large tensors are mmap-ed and returned to the system on free, so the growth above the
    starting level is the computation's peak. Warm ``fn`` up first (one-off buffers), and for
    the cleanest figure call this in a fresh process.
    """
    start = rss_mb()
    peak = [start]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(interval)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        fn()
    finally:
        done.set()
        watcher.join()
    return max(peak[0], rss_mb()) - start


def python_peak_mb(fn: Callable[[], object]) -> float:
    """Peak Python-heap memory of ``fn()`` (MiB); tensors are not counted."""
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def with_threads(n: int, fn: Callable[[], object]) -> object:
    """Run ``fn`` with ``torch.set_num_threads(n)``, restoring the old count."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(old)


def write(name: str, rows: list[dict[str, object]], columns: list[str], notes: str = "") -> None:
    """Write ``results/<name>.json`` and ``results/<name>.md`` (a markdown table)."""
    RESULTS.mkdir(exist_ok=True)
    meta = {"benchmark": name, "machine": machine(), "date": time.strftime("%Y-%m-%d")}
    (RESULTS / f"{name}.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    lines = [f"### {name}", "", f"Machine: {meta['machine']}; {meta['date']}.", ""]
    if notes:
        lines += [notes, ""]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "---|" * len(columns))
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c, "")
            cells.append(f"{v:.3g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def hand_step(kind: str, eg: Callable, *, h: float, eps: float, num_leapfrog: int) -> Callable:
    """A hand-written Langevin, MALA or HMC step (step ``h``; HMC: ``num_leapfrog`` leapfrog
    steps of ``eps``), the same math as ebmlab's kernels, its random numbers given: the
    baseline of bench_peers.py and bench_gpu.py. ``eg(y)`` returns (energy, gradient)."""
    scale = math.sqrt(2 * h)

    def langevin(y: torch.Tensor, e: torch.Tensor, g: torch.Tensor, noise: torch.Tensor,
                 u: torch.Tensor) -> tuple:
        y = y - h * g + scale * noise
        e, g = eg(y)
        return y, e, g

    def mala(y: torch.Tensor, e: torch.Tensor, g: torch.Tensor, noise: torch.Tensor,
             u: torch.Tensor) -> tuple:
        yp = y - h * g + scale * noise
        ep, gp = eg(yp)
        back = y - yp + h * gp
        log_r = e - ep - (back * back).sum(-1) / (4 * h) + 0.5 * (noise * noise).sum(-1)
        acc = u < log_r.clamp(max=0.0).exp()
        return (torch.where(acc[:, None], yp, y), torch.where(acc, ep, e),
                torch.where(acc[:, None], gp, g))

    def hmc(y: torch.Tensor, e: torch.Tensor, g: torch.Tensor, p: torch.Tensor,
            u: torch.Tensor) -> tuple:
        h0 = e + 0.5 * (p * p).sum(-1)
        yn, pn, en, gn = y, p - 0.5 * eps * g, e, g
        for i in range(num_leapfrog):
            yn = yn + eps * pn
            en, gn = eg(yn)
            pn = pn - (0.5 if i == num_leapfrog - 1 else 1.0) * eps * gn
        log_r = h0 - en - 0.5 * (pn * pn).sum(-1)
        acc = u < log_r.clamp(max=0.0).exp()
        return (torch.where(acc[:, None], yn, y), torch.where(acc, en, e),
                torch.where(acc[:, None], gn, g))

    return {"langevin": langevin, "mala": mala, "hmc": hmc}[kind]
