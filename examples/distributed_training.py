"""Distributed training: the same ``eb.fit`` call, data-parallel over two processes.

Run as a plain script, it starts itself under ``torchrun`` with two CPU processes (gloo) and
waits; each process then trains the same energy on its half of every batch (the gradients are
averaged, rank 0 writes the checkpoints) and the inputs of ``sharded_infer`` are split across
the processes. Rank 0 prints the result and draws the figure.
Run: ``python examples/distributed_training.py [--quick] [--out DIR]``, or yourself:
``OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 examples/distributed_training.py``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

import ebmlab as eb
from ebmlab.training import distributed
from ebmlab.training.negatives import Sampled


def worker(args: argparse.Namespace) -> None:
    distributed.setup(device="cpu")
    rank, world = distributed.rank(), distributed.world_size()
    box = eb.Box([-3.5, -3.5], [3.5, 3.5])
    data = eb.data.eight_gaussians(2000, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    energy = eb.energies.MLPEnergy(2, hidden=(64, 64))
    steps = 40 if args.quick else 1000
    folder = args.out / "distributed_run"
    history = eb.fit(
        energy, data, "contrastive_divergence",
        negatives=Sampled(num_steps=10, step_size=0.01, init="buffer", domain=box),
        regularizer=lambda e_pos, e_neg: 0.1 * eb.losses.energy_l2(e_pos, e_neg),
        optimizer=torch.optim.Adam(energy.parameters(), lr=2e-3, betas=(0.0, 0.999)),
        num_steps=steps, batch_size=256, checkpoint_dir=folder, resume=False,
        log_every=steps // 4, progress=False,
    )
    # Conditional inference is what sharded_infer splits; an unconditional energy has one
    # "input", so here every rank runs the same eb.infer (their results agree).
    result = eb.infer(energy, domain=box, num_starts=64,
                      generator=torch.Generator().manual_seed(0))
    if rank == 0:
        print(f"{world} processes trained {steps} steps (batch 256 = {world} x "
              f"{256 // world}); final loss {history['loss'][-1]:.4f}; "
              f"{int(result.count[0])} minimum/minima found; checkpoints in {folder}")
        fig, (ax,) = eb.plot.subplots(title=f"CD on 8 Gaussians, trained by {world} processes")
        eb.plot.landscape(energy, domain=box, ax=ax, num=60 if args.quick else 150)
        eb.plot.modes(result, ax=ax, trajectories=False)
        print("figure:", eb.plot.save(fig, args.out / "distributed_training.png"))
    distributed.barrier()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small, fast run")
    parser.add_argument("--out", type=Path, default=Path("runs/examples"), help="output folder")
    parser.add_argument("--nproc", type=int, default=2, help="processes to start")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if "WORLD_SIZE" in os.environ:  # started by torchrun: one of the workers
        worker(args)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as rendezvous:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node", str(args.nproc), "--rdzv-endpoint", "localhost:0",
                   __file__, "--out", str(args.out)] + (["--quick"] if args.quick else [])
        done = subprocess.run(command, env=env, cwd=rendezvous, timeout=900)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
