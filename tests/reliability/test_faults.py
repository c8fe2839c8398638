"""Fault suite: two writers on one folder, stale locks, truncated files, forged checkpoints, disk
full / read-only, NaN gradients, a killed torchrun agent (gloo, 2 processes)."""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import ebmlab as eb
from ebmlab.training import checkpoint as ck
from ebmlab.training import lock

HERE = Path(__file__).parent
HOLDER = """
import sys, time
from ebmlab.training.lock import hold
with hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def _fit(folder: Path | str, num_steps: int = 4, **kw: object) -> eb.History:
    torch.manual_seed(0)
    model = eb.energies.MLPEnergy(2, hidden=(4,))
    data = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    # a constant learning rate: runs of different num_steps share their first steps (the
    # default optimiser's cosine schedule spans num_steps)
    kw = {"checkpoint_every": 2, "log_every": 1, "batch_size": 16,
          "optimizer": lambda p: torch.optim.Adam(p, lr=1e-3), **kw}
    return eb.fit(model, data, "energy_loss", num_steps=num_steps, progress=False,
                  checkpoint_dir=folder, **kw)


@pytest.fixture()
def holder(tmp_path: Path) -> object:
    """A separate process holding the lock of tmp_path/run (killed at the end)."""
    folder = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc, folder
    proc.kill()
    proc.wait()


def test_second_writer_is_refused_naming_the_owner(holder: object, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    proc, folder = holder
    with pytest.raises(lock.RunLockedError, match=rf"checkpoint_dir .* in use .*pid {proc.pid}"):
        _fit(folder)
    monkeypatch.chdir(tmp_path)  # the same folder spelled relatively is the same run
    with pytest.raises(lock.RunLockedError):
        _fit("run")
    with pytest.raises(lock.RunLockedError):
        _fit("./run/../run")
    assert not list(folder.glob("step-*"))  # the refused writer wrote nothing


def test_stale_lock_of_a_killed_writer_is_taken_over(holder: object) -> None:
    proc, folder = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lock.lock_owner(folder)["pid"] == proc.pid  # the lock file is left behind
    hist = _fit(folder)
    assert hist.records[-1]["step"] == 4
    assert lock.lock_owner(folder) is None  # released at the end


def test_exclusive_fallback_without_flock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          ) -> None:
    monkeypatch.setattr(lock, "fcntl", None)
    folder = tmp_path / "run"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = lock.socket.gethostname()
    path = folder / lock.LOCK_NAME
    path.write_text(json.dumps({"pid": dead.pid, "host": host, "started": 0}))
    with lock.hold(folder):  # dead pid on this host: stale, taken over
        assert lock.lock_owner(folder)["pid"] == os.getpid()
    path.write_text(json.dumps({"pid": os.getppid(), "host": host, "started": 0}))
    with pytest.raises(lock.RunLockedError, match=f"pid {os.getppid()}"):
        lock.hold(folder).__enter__()
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": 0}))
    with pytest.raises(lock.RunLockedError, match="delete"):
        lock.hold(folder).__enter__()


def test_lock_is_reentrant_in_a_thread_and_refused_in_another(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    with lock.hold(tmp_path) as outer:
        with lock.hold(str(tmp_path) + "/.") as inner:
            assert inner is outer
        assert lock.lock_owner(tmp_path) is not None  # still held by the outer block

        def other() -> None:
            try:
                _fit(tmp_path)
            except BaseException as err:  # noqa: BLE001
                errors.append(err)

        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert len(errors) == 1 and isinstance(errors[0], lock.RunLockedError)
    assert lock.lock_owner(tmp_path) is None


def test_a_file_as_checkpoint_dir_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ValueError, match="checkpoint_dir .* is a file"):
        _fit(path)


def test_prune_leaves_a_live_writers_temp_files(tmp_path: Path) -> None:
    live = tmp_path / f".step-000000009.json.tmp-{os.getppid()}"
    dead_proc = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_proc.wait()
    dead = tmp_path / f".step-000000009.json.tmp-{dead_proc.pid}"
    live.write_text("in flight")
    dead.write_text("left over")
    ck.write_checkpoint(tmp_path, 1, {"w": torch.zeros(1)}, {})
    assert live.exists() and not dead.exists()


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k != "time"} for r in csv.DictReader(f)]


def test_truncated_metrics_csv_is_rebuilt_on_resume(tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    _fit(ref, num_steps=6)
    reference = _rows(ref / "metrics.csv")
    assert len(reference) == 6
    run = tmp_path / "run"
    _fit(run, num_steps=4)
    text = (run / "metrics.csv").read_bytes()
    (run / "metrics.csv").write_bytes(text[: len(text) // 3])  # a write cut short
    for p in run.glob("step-000000004.*"):
        p.unlink()  # and the run was killed before its last checkpoint
    _fit(run, num_steps=6)
    assert _rows(run / "metrics.csv") == reference


def test_missing_metrics_csv_is_rebuilt_on_resume(tmp_path: Path) -> None:
    _fit(tmp_path, num_steps=2)
    (tmp_path / "metrics.csv").unlink()
    _fit(tmp_path, num_steps=4)
    assert [r["step"] for r in _rows(tmp_path / "metrics.csv")] == ["1", "2", "3", "4"]


def test_forged_resigned_checkpoint_is_a_checkpoint_error(tmp_path: Path) -> None:
    _fit(tmp_path, num_steps=2)
    path = ck.latest_checkpoint(tmp_path)
    for blob in (b"\x00" * 8, (2**62).to_bytes(8, "little") + b"{}", b"\x10\x00" + b"\0" * 6
                 + b'{"a": {"dtype": "F32", "shape": [1000000], "data_offsets": [0, 4]}}'):
        record = json.loads(path.read_text())
        (tmp_path / record["tensor_file"]).write_bytes(blob)
        record.pop("digest")
        record.update(tensor_sha256=hashlib.sha256(blob).hexdigest(), tensor_bytes=len(blob))
        record["digest"] = ck._digest(record)
        path.write_text(json.dumps(record))
        with pytest.raises(ck.CheckpointError, match="not a valid safetensors file"):
            ck.read_checkpoint(tmp_path)
        with pytest.raises(ck.CheckpointError):
            _fit(tmp_path, num_steps=4)
    record.pop("tensor_bytes")
    record.pop("digest")
    record["digest"] = ck._digest(record)
    path.write_text(json.dumps(record))
    with pytest.raises(ck.CheckpointError, match="tensor_bytes"):
        ck.read_checkpoint(tmp_path)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_disk_full_or_read_only_is_one_line_naming_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    _fit(tmp_path, num_steps=2)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("step-*")}
    real_replace = os.replace

    def failing(src: object, dst: object) -> None:
        if str(dst).endswith((".json", ".safetensors")):
            raise OSError(code, os.strerror(code))
        real_replace(src, dst)

    monkeypatch.setattr(ck.os, "replace", failing)
    with pytest.raises(OSError) as info:
        _fit(tmp_path, num_steps=4)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path.resolve()) in message
    assert os.strerror(code) in message and info.value.errno == code
    assert {p.name: p.read_bytes() for p in tmp_path.glob("step-*")} == before  # intact
    assert not list(tmp_path.glob(".step-*.tmp-*"))  # no temporary file left taking space
    monkeypatch.setattr(ck.os, "replace", real_replace)
    assert _fit(tmp_path, num_steps=4).records[-1]["step"] == 4  # and it resumes


class _SqrtEnergy(eb.Energy):
    """F = sqrt(w²): a finite value with a NaN gradient at w = 0."""

    def __init__(self, w0: float) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([w0]))

    def forward(self, y: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return (self.w**2).sqrt().expand(y.shape[0]) + 0 * y.sum(-1)


def _all_checkpoints_finite(folder: Path) -> bool:
    for step in ck.list_checkpoints(folder):
        _, tensors, _ = ck.read_checkpoint(folder / f"step-{step:09d}.json")
        if not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
            return False
    return True


@pytest.mark.parametrize("where", ["last step", "mid-run"])
def test_nan_gradient_never_reaches_a_checkpoint(tmp_path: Path, where: str) -> None:
    """The issue's rule: a finite loss with a NaN gradient is detected before the step; no
    checkpoint holds non-finite tensors, none is called "last good" (training's fix)."""
    data = torch.randn(64, 2)
    energy = _SqrtEnergy(0.0 if where == "last step" else 1.0)
    steps = 1 if where == "last step" else 4
    try:
        eb.fit(energy, data, "energy_loss", num_steps=steps, progress=False,
               checkpoint_dir=tmp_path, checkpoint_every=1 if steps == 1 else 2, log_every=1,
               optimizer=torch.optim.SGD(energy.parameters(), lr=1.0))
    except eb.training.DivergenceError as err:
        if err.checkpoint is not None:
            _, tensors, _ = ck.read_checkpoint(err.checkpoint)
            assert torch.isfinite(tensors["model.w"]).all()
    assert _all_checkpoints_finite(tmp_path)
    assert torch.isfinite(energy.w).all()


CONFIG = """
seed = 0
num_steps = 6
batch_size = 32
checkpoint_every = 2
log_every = 1

[energy]
name = "mlp"
hidden = [8]

[data]
name = "eight_gaussians"
num = 64

[loss]
name = "energy_loss"

[optimizer]
name = "adam"
lr = 0.01
"""


def test_truncated_config_toml_does_not_block_resume(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from ebmlab.cli.train import train

    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    run = tmp_path / "run"
    train(cfg, output=run, progress=False)
    for p in run.glob("step-000000006.*"):
        p.unlink()
    text = (run / "config.toml").read_text()
    (run / "config.toml").write_text(text[: len(text) // 3])
    train(cfg, output=run, progress=False)  # resumes (the checkpoints hold the run)
    assert ck.list_checkpoints(run)[-1] == 6
    assert len(_rows(run / "metrics.csv")) == 6
    monkeypatch.chdir(tmp_path)
    train(cfg, output=Path("run"), progress=False)  # relative spelling: the same run


def test_killed_torchrun_agent_stops_its_workers(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    agent = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
         "2", str(HERE / "_agent_worker.py"), str(tmp_path)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"pid-{r}").exists() for r in range(2)):
            assert agent.poll() is None, agent.stderr.read() if agent.stderr else ""
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.2)
        time.sleep(0.5)
        pids = [int((tmp_path / f"pid-{r}").read_text()) for r in range(2)]
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        gone_by = time.monotonic() + 15
        while any(_alive(p) for p in pids) and time.monotonic() < gone_by:
            time.sleep(0.2)
        alive = [p for p in pids if _alive(p)]
        for p in alive:
            os.kill(p, signal.SIGKILL)
        assert not alive, "workers trained on after their torchrun agent was killed"
        stderr = agent.stderr.read() if agent.stderr else ""
        assert "torchrun agent" in stderr and "is gone" in stderr
    finally:
        if agent.poll() is None:
            agent.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return True


def test_second_ebmlab_train_is_refused_before_touching_the_folder(
    holder: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ebmlab.cli import main

    proc, folder = holder
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    assert main(["train", str(cfg), "--output", str(folder), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"pid {proc.pid}" in err and "in use" in err
    assert not (folder / "config.toml").exists()  # the refused writer wrote nothing
