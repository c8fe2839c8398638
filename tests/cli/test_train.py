"""``ebmlab train`` / ``ebmlab infer``: config validation, run folders, resume, subprocess smoke."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ebmlab.cli import main
from ebmlab.cli.config import ConfigError, build, dump_toml, load_config, resolve_config

TINY = """
seed = 0
num_steps = 6
batch_size = 32
output = "{out}"
log_every = 3
checkpoint_every = 3

[energy]
name = "mlp"
hidden = [8]

[data]
name = "eight_gaussians"
num = 64

[loss]
name = "contrastive_divergence"

[regularizer]
name = "energy_l2"
weight = 0.1

[negatives]
name = "sampled"
init = "noise"
num_steps = 2
step_size = 0.01

[optimizer]
name = "adam"
lr = 0.01

[domain]
low = [-3.0, -3.0]
high = [3.0, 3.0]

[plot]
num = 20
"""


def _config(tmp_path: Path, text: str = TINY, name: str = "tiny.toml") -> Path:
    path = tmp_path / name
    path.write_text(text.format(out=(tmp_path / "run").as_posix()))
    return path


def _resolved(tmp_path, text):
    return resolve_config(load_config(_config(tmp_path, text)))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("seed = 0", "seed = 0\nlearning_rate = 3"), "unknown key 'learning_rate'"),
        (("step_size = 0.01", "step_size = 0.01\nstepsize = 1"), "no option 'stepsize'"),
        (("num_steps = 6", "num_steps = -6"), "num_steps must be >= 1"),
        (("batch_size = 32", "batch_size = 'many'"), "batch_size must be"),
        (('name = "mlp"', 'name = "transformer"'), "energy.*name must be one of"),
        (('name = "adam"', 'name = "adamm"'), "optimizer.*name must be one of"),
        (("lr = 0.01", "lr = -1.0"), "optimizer.*bad value"),
        (('name = "contrastive_divergence"', 'name = "hinge"\nmargn = 1'), "no option 'margn'"),
        (("[plot]", "[plot]\ncolour = 1"), "plot.*unknown keys"),
    ],
)
def test_bad_configs_are_refused_with_the_key_named(tmp_path, edit, message):
    text = TINY.replace(*edit)
    with pytest.raises(ConfigError, match=message):
        build(_resolved(tmp_path, text))


def test_missing_table_and_invalid_toml(tmp_path):
    with pytest.raises(ConfigError, match=r"needs a \[loss\] table"):
        _resolved(tmp_path, TINY.replace('[loss]\nname = "contrastive_divergence"', ""))
    with pytest.raises(ConfigError, match="not valid TOML"):
        _resolved(tmp_path, TINY + "\n[broken")


def test_dump_toml_round_trips(tmp_path):
    config = _resolved(tmp_path, TINY)
    path = tmp_path / "again.toml"
    path.write_text(dump_toml(config))
    assert resolve_config(load_config(path)) == config


def test_train_writes_the_run_folder_and_resumes(tmp_path, capsys):
    config = _config(tmp_path)
    assert main(["train", str(config), "--no-progress"]) == 0
    run = tmp_path / "run"
    names = {p.name for p in run.iterdir()}
    assert {"config.toml", "metrics.csv", "landscape_before.png", "landscape_after.png",
            "step-000000006.json", "step-000000006.safetensors"} <= names
    assert main(["train", str(config), "--no-progress"]) == 0  # finished: resumes, no-op
    # The same folder with another config is refused.
    other = _config(tmp_path, TINY.replace("lr = 0.01", "lr = 0.02"), "other.toml")
    assert main(["train", str(other), "--no-progress"]) == 2
    assert "different config" in capsys.readouterr().err
    assert main(["infer", str(run), "--num-starts", "4"]) == 0
    assert "minima" in capsys.readouterr().out
    assert main(["infer", str(run), "--x", "1.0"]) == 2  # unconditional: --x refused
    assert "unconditional" in capsys.readouterr().err


def test_infer_a_conditional_run(tmp_path, capsys):
    text = (TINY.replace('name = "eight_gaussians"', 'name = "two_branch"')
            .replace("low = [-3.0, -3.0]", "low = [-3.0]").replace("high = [3.0, 3.0]",
                                                                 "high = [3.0]"))
    config = _config(tmp_path, text)
    assert main(["train", str(config), "--no-progress"]) == 0
    assert main(["infer", str(tmp_path / "run"), "--x", "1.0", "--x", "2.0",
                 "--plot", str(tmp_path / "m.png")]) == 0
    out = capsys.readouterr().out
    assert "x = [1.0]" in out and "x = [2.0]" in out and (tmp_path / "m.png").is_file()
    assert main(["infer", str(tmp_path / "run")]) == 2
    assert "conditional" in capsys.readouterr().err


def test_ebmlab_train_subprocess_smoke(tmp_path):
    config = _config(tmp_path)
    exe = Path(sys.executable).with_name("ebmlab")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "ebmlab"]
    done = subprocess.run([*cmd, "train", str(config), "--threads", "1"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "run written to" in done.stdout
    assert "6/6" in done.stderr  # the progress bar reached the end
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") == 3  # header + 2 rows


def test_example_configs_are_valid():
    folder = Path(__file__).resolve().parents[2] / "examples" / "configs"
    configs = sorted(folder.glob("*.toml"))
    assert configs
    old = torch.get_default_dtype()
    try:
        for path in configs:
            config = resolve_config(load_config(path))
            config["data"]["num"] = 16  # build only: no need for the full data set
            build(config)
    finally:
        torch.set_default_dtype(old)
