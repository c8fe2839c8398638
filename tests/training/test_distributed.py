"""Data-parallel training and sharded inference on torch.distributed (2 CPU processes, gloo).

The test launches this file under ``torchrun --standalone --nproc_per_node 2`` (a free port is
chosen by torchrun's rendezvous) and compares what the two ranks wrote with single-process runs
done in the test itself. Run as a script (``python test_distributed.py SCENARIO DIR``) it is
the job of one rank. Only CPU/gloo runs here; the CUDA/nccl path needs a GPU machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ebmlab as eb
from ebmlab.training import distributed, read_checkpoint
from ebmlab.training.negatives import Sampled

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
STEPS = 6
BATCH = 64


class Shifted:
    """Deterministic negatives y/2 + 1 (row-wise), so that runs can be compared exactly."""

    def __init__(self, fail_rank: int | None = None, fail_call: int = 0) -> None:
        self.fail_rank, self.fail_call, self.calls = fail_rank, fail_call, 0

    def __call__(self, energy: object, y: torch.Tensor, x: object = None,
                 generator: object = None) -> torch.Tensor:
        self.calls += 1
        if self.fail_rank == distributed.rank() and self.calls == self.fail_call:
            raise RuntimeError(f"boom on call {self.calls}")
        return 0.5 * y + 1.0


CONFIG = """
seed = 0
num_steps = 4
batch_size = 32
checkpoint_every = 2

[energy]
name = "mlp"
hidden = [8]

[data]
name = "eight_gaussians"
num = 64

[loss]
name = "contrastive_divergence"

[negatives]
name = "sampled"
init = "buffer"
num_steps = 2
step_size = 0.01
buffer_size = 64

[optimizer]
name = "adam"
lr = 0.01

[domain]
low = [-4.0, -4.0]
high = [4.0, 4.0]

[plot]
num = 10
"""


def make_model(device: str = "cpu") -> torch.nn.Module:
    torch.manual_seed(7)  # identical initialisation on every rank
    return eb.energies.MLPEnergy(2, hidden=(16,)).to(device)


def make_data(device: str = "cpu") -> torch.Tensor:
    return eb.data.eight_gaussians(256, generator=torch.Generator().manual_seed(3)).to(device)


def train_exact(device: str = "cpu", num_steps: int = STEPS) -> torch.nn.Module:
    model = make_model(device)
    eb.fit(model, make_data(device), "contrastive_divergence", negatives=Shifted(),
           optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), num_steps=num_steps,
           batch_size=BATCH, clip_grad_norm=10.0, log_every=2, progress=False)
    return model


def train_pcd(folder: Path, num_steps: int) -> torch.nn.Module:
    """A persistent-CD run: per-rank replay buffers and generators go into the checkpoint."""
    model = make_model()
    negatives = Sampled(num_steps=3, step_size=0.01, init="buffer", buffer_size=64,
                        domain=eb.Box([-4.0, -4.0], [4.0, 4.0]))
    eb.fit(model, make_data(), "contrastive_divergence", negatives=negatives,
           optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), num_steps=num_steps,
           batch_size=BATCH, checkpoint_dir=folder, checkpoint_every=2, log_every=2,
           progress=False)
    return model


def conditional_energy() -> eb.Energy:
    return eb.FunctionEnergy(lambda y, x: ((y**2 - x) ** 2).sum(-1), y_shape=(1,))


def infer_inputs(device: str = "cpu") -> torch.Tensor:
    return torch.tensor([[4.0], [1.0], [2.25], [0.25], [9.0]], device=device)  # B = 5: uneven


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------- the rank's job


def worker(scenario: str, out: Path) -> None:
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    me = int(os.environ["RANK"])
    if scenario == "all":
        torch.save(state(train_exact()), out / f"exact-{me}.pt")
        # Resume: 4 steps, snapshot the folder, then continue to 8 in this 2-process group.
        train_pcd(out / "pcd", 4)
        distributed.barrier()
        if me == 0:
            shutil.copytree(out / "pcd", out / "pcd-at-4")
        distributed.barrier()
        resumed = train_pcd(out / "pcd", 8)
        straight = train_pcd(out / "pcd-straight", 8)
        torch.save({"resumed": state(resumed), "straight": state(straight)},
                   out / f"pcd-{me}.pt")
        res = distributed.sharded_infer(conditional_energy(), infer_inputs(), num_starts=8,
                                        generator=torch.Generator().manual_seed(0))
        q = eb.energies.Quadratic(torch.eye(2))
        y = torch.linspace(-1, 1, 14).reshape(7, 2)
        chains = distributed.sharded_sample(q, torch.zeros(7, 2), eb.samplers.Langevin(0.1), 5,
                                            seed=11, num_shards=2)
        torch.save({"y": res.y, "energy": res.energy, "valid": res.valid, "count": res.count,
                    "free": distributed.sharded_energy(q, y), "chains": chains},
                   out / f"infer-{me}.pt")
        # Last (train() sets the default dtype): `ebmlab train` as the docs launch it.
        from ebmlab.cli.train import train

        (out / "cli.toml").write_text(CONFIG)
        train(out / "cli.toml", output=out / "cli-run", progress=False)
    elif scenario == "fail":
        model = make_model()
        eb.fit(model, make_data(), "contrastive_divergence",
               negatives=Shifted(fail_rank=1, fail_call=5), num_steps=STEPS, batch_size=BATCH,
               checkpoint_dir=out / "ckpt", checkpoint_every=2, log_every=1, progress=False)
    else:
        raise ValueError(scenario)


# ---------------------------------------------------------------------------- the tests


def launch(scenario: str, out: Path, timeout: float = 150) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("EBMLAB_BACKEND", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", str(Path(__file__).resolve()), scenario, str(out)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = launch("all", out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_two_processes_equal_one_on_the_whole_batch(two_process_run: Path) -> None:
    torch.set_default_dtype(torch.float64)
    single = state(train_exact())
    ranks = [torch.load(two_process_run / f"exact-{r}.pt") for r in range(2)]
    for name, value in single.items():
        # Both ranks hold the same replica (DDP all-reduces the gradient: same bits)...
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        # ...equal to one process on the 64-row batch up to summation order: the gradient
        # differs by O(eps * |terms|) ~ 1e-15, amplified at most ~1/(sqrt(v)+eps) by Adam's
        # normalisation over 6 steps; 1e-8 leaves margin while a wrong shard (another half of
        # the batch, a sum instead of a mean) moves the weights by ~1e-2 (lr).
        torch.testing.assert_close(ranks[0][name], value, rtol=0, atol=1e-8)
    moved = state(make_model())
    assert any((single[k] - moved[k]).abs().max() > 1e-3 for k in single)  # it did train


def test_checkpoint_of_two_processes_resumes_in_two_and_in_one(two_process_run: Path) -> None:
    torch.set_default_dtype(torch.float64)
    pcd = [torch.load(two_process_run / f"pcd-{r}.pt") for r in range(2)]
    for name, value in pcd[0]["straight"].items():
        # Same world size: the resumed run is bit-identical to the uninterrupted one.
        assert torch.equal(pcd[0]["resumed"][name], value), name
        assert torch.equal(pcd[1]["resumed"][name], value), name
    _, tensors, meta = read_checkpoint(two_process_run / "pcd-at-4")
    assert "ranks.1.generator" in tensors and "ranks.1.negatives.data" in tensors
    assert not any(k.startswith("ranks.0.") for k in tensors)  # rank 0 uses the plain keys
    # One process resumes the 2-process checkpoint (rank 0's buffer and generator).
    folder = two_process_run / "pcd-at-4"
    model = make_model()
    history = eb.fit(model, make_data(), "contrastive_divergence",
                     negatives=Sampled(num_steps=3, step_size=0.01, init="buffer",
                                       buffer_size=64, domain=eb.Box([-4.0, -4.0], [4.0, 4.0])),
                     optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), num_steps=8,
                     batch_size=BATCH, checkpoint_dir=folder, checkpoint_every=2, log_every=2,
                     progress=False)
    assert history.resumed_from == 4 and history.final_step == 8
    assert all(torch.isfinite(torch.tensor(history["loss"])))
    step, tensors, _ = read_checkpoint(folder)
    assert step == 8


def test_sharded_infer_sample_and_energy_equal_single_process(two_process_run: Path) -> None:
    torch.set_default_dtype(torch.float64)
    got = [torch.load(two_process_run / f"infer-{r}.pt") for r in range(2)]
    ref = eb.infer(conditional_energy(), infer_inputs(), num_starts=8,
                   generator=torch.Generator().manual_seed(0))
    for r in range(2):  # every rank returns the whole gathered result
        assert torch.equal(got[r]["count"], ref.count)
        assert torch.equal(got[r]["valid"], ref.valid)
        # Same starts and the same per-row solver; rows converge independently, so only the
        # batch-level stopping step may differ: |dy| <= gtol-scale steps, 1e-6 is ample.
        torch.testing.assert_close(got[r]["y"], ref.y, rtol=0, atol=1e-6)
        torch.testing.assert_close(got[r]["energy"], ref.energy, rtol=0, atol=1e-9)
    q = eb.energies.Quadratic(torch.eye(2))
    y = torch.linspace(-1, 1, 14).reshape(7, 2)
    torch.testing.assert_close(got[0]["free"], q(y).detach(), rtol=0, atol=1e-12)
    chains = distributed.sharded_sample(q, torch.zeros(7, 2), eb.samplers.Langevin(0.1), 5,
                                        seed=11, num_shards=2)
    assert torch.equal(got[0]["chains"], chains) and torch.equal(got[1]["chains"], chains)


def test_ebmlab_train_runs_under_torchrun(two_process_run: Path) -> None:
    run = two_process_run / "cli-run"
    step, tensors, _ = read_checkpoint(run)
    assert step == 4 and "ranks.1.generator" in tensors
    assert (run / "config.toml").is_file() and (run / "landscape_after.png").is_file()
    rows = (run / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2  # header + one row per checkpoint (steps 2 and 4), rank 0 only


def test_a_failing_rank_ends_the_run_and_keeps_the_checkpoint(tmp_path: Path) -> None:
    done = launch("fail", tmp_path)
    assert done.returncode != 0
    text = done.stdout + done.stderr
    # Call 5 of the negatives is step 5: rank 1 fails there, after the step-4 checkpoint.
    assert "rank 1 of 2 failed at step 5: RuntimeError: boom on call 5" in text, text[-3000:]
    step, tensors, _ = read_checkpoint(tmp_path / "ckpt")
    assert step == 4 and "ranks.1.generator" in tensors
    assert not list((tmp_path / "ckpt").glob("step-000000006*"))


@pytest.mark.parametrize("device", DEVICES)
def test_single_process_helpers_follow_the_device(device: str) -> None:
    x = infer_inputs(device)
    res = distributed.sharded_infer(conditional_energy(), x, num_starts=4,
                                    generator=torch.Generator(device=device).manual_seed(0))
    assert res.y.device == x.device
    assert distributed.choose_backend(device) == ("nccl" if device == "cuda" else "gloo")
    assert distributed.world_size() == 1 and distributed.rank() == 0
    assert distributed.shard_range(5, 1, 2) == (3, 5)
    assert distributed.derive_seed(3, 0) == 3 and distributed.derive_seed(3, 1) != 3


def test_batch_not_divisible_by_world_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(ValueError, match="multiple of the number of processes 3"):
        train_exact(num_steps=1)


if __name__ == "__main__":
    worker(sys.argv[1], Path(sys.argv[2]))
