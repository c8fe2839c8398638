"""Scaling of a CD training step on CPU: 1 vs 2 processes (torchrun, gloo, one thread each).

The step: a 2->128->128->1 SiLU MLPEnergy, a global batch of BATCH rows, negatives from
K = 10 Langevin steps started at the data (CD-10), Adam. ``eb.fit`` is timed against a
hand-written plain-PyTorch DDP loop of the same math, in the same processes, alternating.
Throughput is global rows per second; the scaling figure is throughput(2) / throughput(1)
(ideal 2.0 on two idle cores). The machine is shared, so each world size is launched
REPEATS times alternately and medians are reported.

Run: ``python benchmarks/bench_distributed.py [--repeats N] [--batch B] [--steps S]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import ebmlab as eb
from ebmlab.training import distributed
from ebmlab.training.negatives import Sampled

from common import write

K, STEP_SIZE, LR = 10, 0.01, 1e-3


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return eb.energies.MLPEnergy(2, hidden=(128, 128))


def data(n: int) -> torch.Tensor:
    return eb.data.eight_gaussians(n, generator=torch.Generator().manual_seed(1))


def run_fit(batch: int, steps: int) -> float:
    energy = model()
    start = time.perf_counter()
    eb.fit(energy, data(batch), "contrastive_divergence",
           negatives=Sampled(num_steps=K, step_size=STEP_SIZE, init="data"),
           optimizer=lambda p: torch.optim.Adam(p, lr=LR), num_steps=steps, batch_size=batch,
           log_every=steps, progress=False)
    return time.perf_counter() - start


def run_hand_written(batch: int, steps: int) -> float:
    """CD-10 with DDP written by hand: slice of the batch, Langevin by autograd, Adam."""
    from torch.nn.parallel import DistributedDataParallel

    energy = model()
    net = DistributedDataParallel(energy) if distributed.is_distributed() else energy
    opt = torch.optim.Adam(energy.parameters(), lr=LR)
    y_all = data(batch)
    lo, hi = distributed.shard_range(batch, distributed.rank(), distributed.world_size())
    gen = torch.Generator().manual_seed(distributed.derive_seed(0, distributed.rank()))
    noise = math.sqrt(2 * STEP_SIZE)
    start = time.perf_counter()
    for _ in range(steps):
        y = y_all[lo:hi]
        y_neg = y.clone()
        for _ in range(K):
            y_neg.requires_grad_(True)
            (grad,) = torch.autograd.grad(energy.forward(y_neg).sum(), y_neg)
            with torch.no_grad():
                y_neg = y_neg - STEP_SIZE * grad + noise * torch.randn(
                    y_neg.shape, generator=gen, dtype=y_neg.dtype)
        loss = net(y).mean() - net(y_neg.detach()).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def worker(out: Path, batch: int, steps: int) -> None:
    torch.set_num_threads(1)
    distributed.setup(device="cpu")
    run_fit(batch, 2)  # warm-up: process group, allocator, first-call checks
    run_hand_written(batch, 2)
    times = {"fit": [], "hand": []}
    for i in range(2):
        pair = [("fit", run_fit), ("hand", run_hand_written)]
        for name, fn in pair if i % 2 == 0 else pair[::-1]:
            distributed.barrier()
            times[name].append(fn(batch, steps))
    if distributed.is_main():
        out.write_text(json.dumps({k: min(v) for k, v in times.items()}))


def launch(world: int, batch: int, steps: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "times.json"
        env = dict(os.environ, OMP_NUM_THREADS="1")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", str(world), __file__, "--worker", str(out),
               "--batch", str(batch), "--steps", str(steps)]
        subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--worker", type=Path, default=None)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.batch, args.steps)
        return
    load_before = os.getloadavg()[0]
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    for i in range(args.repeats):
        for world in (1, 2) if i % 2 == 0 else (2, 1):
            runs[world].append(launch(world, args.batch, args.steps))
    rows = []
    rate = {}
    for impl, label in (("fit", "eb.fit"), ("hand", "hand-written DDP loop")):
        for world in (1, 2):
            seconds = statistics.median(r[impl] for r in runs[world]) / args.steps
            rate[impl, world] = args.batch / seconds
            rows.append({"implementation": label, "processes": world,
                         "step_ms": 1e3 * seconds, "rows_per_s": rate[impl, world]})
        for row in rows[-2:]:
            row["scaling"] = rate[impl, row["processes"]] / rate[impl, 1]
    for row in rows:
        row["fit_vs_hand"] = rate["hand", row["processes"]] / rate["fit", row["processes"]]
    notes = (
        f"CD-{K} step of a 2->128->128->1 MLPEnergy, global batch {args.batch} rows (each of W "
        f"processes takes {args.batch}/W), {args.steps} timed steps per launch, best of 2 per "
        f"launch, median of {args.repeats} launches per world size, torchrun --standalone, "
        "gloo, OMP_NUM_THREADS=1 per process. scaling = throughput(W) / throughput(1) (ideal "
        "2.0 on two idle cores); fit_vs_hand = time of eb.fit / time of the hand-written DDP "
        "loop at the same W. The machine is shared by several engineers: two processes "
        "compete with other jobs for its 2 cores, so the figures are noisy. 1-minute load "
        f"average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after the run "
        f"({os.cpu_count()} cores)."
    )
    write("distributed", rows,
          ["implementation", "processes", "step_ms", "rows_per_s", "scaling", "fit_vs_hand"],
          notes)


if __name__ == "__main__":
    main()
