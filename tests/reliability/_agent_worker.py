"""One torchrun worker of test_faults' killed-agent case: trains long, writes its pid first."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

import ebmlab as eb
from ebmlab.training import distributed

if __name__ == "__main__":
    folder = Path(sys.argv[1])
    torch.set_num_threads(1)
    distributed.setup(device="cpu")
    (folder / f"pid-{distributed.rank()}").write_text(str(os.getpid()))
    model = eb.energies.MLPEnergy(2, hidden=(8,))
    data = torch.randn(64, 2)
    eb.fit(model, data, "energy_loss", num_steps=10**7, batch_size=16, log_every=1000,
           checkpoint_dir=folder / "run", checkpoint_every=10**6, progress=False)
