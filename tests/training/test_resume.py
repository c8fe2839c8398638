"""Exact resume: a run killed with SIGKILL and resumed ends bit-identical to an uninterrupted one.

Run as a script (``python test_resume.py DIR NUM_STEPS``) it is the training job the test kills.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import ebmlab as eb
from ebmlab.training import CheckpointError, read_checkpoint
from ebmlab.training.checkpoint import list_checkpoints
from ebmlab.training.negatives import Sampled

NUM_STEPS = 120
EVERY = 10


def train_job(folder: Path | None, num_steps: int = NUM_STEPS) -> dict[str, torch.Tensor]:
    """A small run that exercises every piece of state: PCD buffer, Adam, scheduler, clipping."""
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(7)  # model initialisation; fit itself draws from its own generators
    model = eb.energies.MLPEnergy(2, hidden=(16, 16))
    data = eb.data.eight_gaussians(256, generator=torch.Generator().manual_seed(3))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=50, gamma=0.7)
    negatives = Sampled(num_steps=5, step_size=0.01, init="buffer", buffer_size=500,
                        domain=eb.Box([-4.0, -4.0], [4.0, 4.0]))
    eb.fit(
        model, data, "contrastive_divergence", negatives=negatives, optimizer=opt,
        scheduler=sched, regularizer=lambda e_pos, e_neg: 0.1 * eb.losses.energy_l2(e_pos, e_neg),
        num_steps=num_steps, batch_size=64, clip_grad_norm=10.0, checkpoint_dir=folder,
        checkpoint_every=EVERY, log_every=10, progress=False, seed=11,
    )
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _threads_one(fn):
    old = torch.get_num_threads()
    try:
        return fn()
    finally:
        torch.set_num_threads(old)


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    reference = _threads_one(lambda: train_job(tmp_path / "reference"))
    folder = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, __file__, str(folder), str(NUM_STEPS)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    # Kill as soon as some (not all) checkpoints exist: mid-run, possibly mid-write.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list_checkpoints(folder)) >= 1:
            break
        time.sleep(0.005)
    was_running = proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert was_running, f"job ended before it could be killed: {proc.stderr.read().decode()}"
    steps = list_checkpoints(folder)
    assert steps and steps[-1] < NUM_STEPS  # it really stopped mid-run
    resumed = _threads_one(lambda: train_job(folder))
    assert reference.keys() == resumed.keys()
    for k in reference:
        assert torch.equal(reference[k], resumed[k]), k
    # The metrics CSV holds each logged step exactly once after the resume.
    lines = (folder / "metrics.csv").read_text().splitlines()
    logged = [int(float(line.split(",")[0])) for line in lines[1:]]
    assert logged == sorted(set(logged)) and logged[-1] == NUM_STEPS


def test_resume_in_process_equals_uninterrupted(tmp_path):
    full = _threads_one(lambda: train_job(tmp_path / "a", 60))
    _threads_one(lambda: train_job(tmp_path / "b", 40))
    resumed = _threads_one(lambda: train_job(tmp_path / "b", 60))
    for k in full:
        assert torch.equal(full[k], resumed[k]), k
    # Resuming a finished run does nothing and keeps the result.
    again = _threads_one(lambda: train_job(tmp_path / "b", 60))
    for k in full:
        assert torch.equal(full[k], again[k]), k


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    model = eb.energies.Quadratic(torch.eye(1))
    eb.fit(model, torch.randn(32, 1), "energy_loss", num_steps=4, checkpoint_dir=tmp_path,
           checkpoint_every=2, progress=False)
    return tmp_path


def test_truncated_tensor_file_is_refused(checkpoint):
    path = sorted(checkpoint.glob("step-*.safetensors"))[-1]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint(checkpoint)
    model = eb.energies.Quadratic(torch.eye(1))
    with pytest.raises(CheckpointError):  # fit refuses to resume from it, too
        eb.fit(model, torch.randn(32, 1), "energy_loss", num_steps=8, checkpoint_dir=checkpoint,
               progress=False)


def test_tampered_tensor_file_is_refused(checkpoint):
    path = sorted(checkpoint.glob("step-*.safetensors"))[-1]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # flip one bit of the last parameter
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        read_checkpoint(checkpoint)


def test_tampered_json_is_refused(checkpoint):
    path = sorted(checkpoint.glob("step-*.json"))[-1]
    record = json.loads(path.read_text())
    record["step"] += 1
    path.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="checksum"):
        read_checkpoint(checkpoint)
    path.write_text(path.read_text()[:40])
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_checkpoint(path)


def test_uncommitted_checkpoint_is_ignored(checkpoint):
    # A crash between the tensor file and the JSON leaves a tensor file without its commit
    # mark (and maybe a temporary file): the previous checkpoint stays the latest.
    (checkpoint / "step-000000099.safetensors").write_bytes(b"partial")
    (checkpoint / ".step-000000100.json.tmp-1").write_text("{")
    step, tensors, _ = read_checkpoint(checkpoint)
    assert step == 4
    assert "model.mean" in tensors


def test_checkpoint_holds_everything(checkpoint):
    step, tensors, meta = read_checkpoint(checkpoint)
    assert step == 4
    assert {"model.mean", "model.precision", "rng.generator", "rng.__torch_cpu__"} <= set(tensors)
    assert any(k.startswith("optimizer.state.") for k in tensors)
    # the default optimiser: Adam at 3e-3, decayed to 0 by the end (its schedule is saved too)
    group = meta["optimizer"]["param_groups"][0]
    assert group["initial_lr"] == 3e-3 and group["lr"] == 0.0
    assert meta["scheduler"]["last_epoch"] == 4
    assert [r["step"] for r in meta["history"]] == [2, 4]
    assert list_checkpoints(checkpoint) == [2, 4]  # keep_checkpoints=2 keeps both


def test_resume_false_refuses_a_folder_with_checkpoints(checkpoint):
    model = eb.energies.Quadratic(torch.eye(1))
    with pytest.raises(ValueError, match="earlier run"):
        eb.fit(model, torch.randn(32, 1), "energy_loss", num_steps=4, checkpoint_dir=checkpoint,
               resume=False, progress=False)


if __name__ == "__main__":
    train_job(Path(sys.argv[1]), int(sys.argv[2]))
