"""The CLI fits: --version, --device, --threads, resume messages, suggestions, clean refusals."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ebmlab.cli import main
from ebmlab.cli.config import ConfigError, build, load_config, resolve_config

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
num = 12
"""


def _config(tmp_path: Path, text: str = TINY, name: str = "tiny.toml") -> Path:
    path = tmp_path / name
    path.write_text(text.replace("{out}", (tmp_path / "run").as_posix()))
    return path


def _build(tmp_path: Path, text: str) -> dict:
    return build(resolve_config(load_config(_config(tmp_path, text))))


def test_version():
    done = subprocess.run([sys.executable, "-m", "ebmlab", "--version"], capture_output=True,
                          text=True, timeout=120)
    import ebmlab

    assert done.returncode == 0 and done.stdout.strip() == f"ebmlab {ebmlab.__version__}"


def test_device_cpu_and_threads_default_to_one(tmp_path, capsys):
    torch.set_num_threads(2)
    assert main(["train", str(_config(tmp_path)), "--no-progress", "--device", "cpu"]) == 0
    assert torch.get_num_threads() == 1  # the default on the CPU
    assert main(["infer", str(tmp_path / "run"), "--num-starts", "4", "--device", "cpu",
                 "--threads", "2"]) == 0
    assert torch.get_num_threads() == 2
    assert "minima" in capsys.readouterr().out


@pytest.mark.parametrize(("device", "message"), [
    ("tpu", "--device must be cpu, cuda or cuda:N"),
    ("nonsense", "--device must be cpu, cuda or cuda:N"),
    pytest.param("cuda", "no CUDA GPU", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="this machine has a GPU")),
])
def test_bad_devices_are_refused(tmp_path, capsys, device, message):
    assert main(["train", str(_config(tmp_path)), "--device", device]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_resume_and_complete_are_logged(tmp_path, caplog):
    config = _config(tmp_path)
    caplog.set_level(logging.INFO, logger="ebmlab.cli")
    assert main(["train", str(config), "--no-progress"]) == 0
    assert "resuming" not in caplog.text and "step 6: loss" in caplog.text
    caplog.clear()
    assert main(["train", str(config), "--no-progress"]) == 0
    assert "already complete (step 6 of 6)" in caplog.text
    for p in (tmp_path / "run").glob("step-000000006.*"):
        p.unlink()
    caplog.clear()
    assert main(["train", str(config), "--no-progress"]) == 0
    assert "from step 3 of 6" in caplog.text


def test_metrics_that_do_not_apply_are_left_out(tmp_path, caplog):
    text = TINY.replace('name = "contrastive_divergence"', 'name = "energy_loss"')
    text = text.split("[negatives]")[0] + "[domain]" + text.split("[domain]")[1]
    caplog.set_level(logging.INFO, logger="ebmlab.cli")
    assert main(["train", str(_config(tmp_path, text)), "--no-progress"]) == 0
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("step 6"))
    assert "loss" in line and "gap" not in line and "nan" not in line


@pytest.mark.parametrize(("edit", "suggestion"), [
    (("seed = 0", "seed = 0\nnum_step = 3"), "did you mean 'num_steps'?"),
    (('name = "mlp"', 'name = "mpl"'), "did you mean 'mlp'?"),
    (("step_size = 0.01", "stepsize = 0.01"), "did you mean 'step_size'?"),
    (('name = "adam"', 'name = "adamm"'), "did you mean 'adam'?"),
    (('name = "contrastive_divergence"', 'name = "contrastive_divergense"'),
     "did you mean 'contrastive_divergence'?"),
    (('name = "eight_gaussians"', 'name = "eight_gausians"'), "did you mean 'eight_gaussians'?"),
    (("[plot]\nnum = 12", "[plot]\nnm = 12"), "did you mean 'num'?"),
])
def test_unknown_names_suggest_the_closest(tmp_path, edit, suggestion):
    with pytest.raises(ConfigError, match=suggestion):
        _build(tmp_path, TINY.replace(*edit))


def test_errors_speak_config_not_python(tmp_path):
    with pytest.raises(ConfigError) as info:
        _build(tmp_path, TINY.replace("num = 64\n", ""))
    assert "[data] 'eight_gaussians' needs num = ..." in str(info.value)
    assert "()" not in str(info.value) and "positional" not in str(info.value)
    no_negatives = TINY.split("[negatives]")[0] + "[domain]" + TINY.split("[domain]")[1]
    with pytest.raises(ConfigError) as info:
        _build(tmp_path, no_negatives)
    assert "[negatives] table" in str(info.value) and "negatives=" not in str(info.value)


def test_a_refused_config_leaves_no_run_folder(tmp_path, capsys):
    # Refused by fit, after the folder was made: NCE needs negatives with a log density.
    text = TINY.replace('name = "contrastive_divergence"', 'name = "nce"')
    assert main(["train", str(_config(tmp_path, text)), "--no-progress"]) == 2
    assert "log density" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_truncated_config_toml_does_not_block_resume(tmp_path, caplog):
    config = _config(tmp_path)
    assert main(["train", str(config), "--no-progress"]) == 0
    saved = tmp_path / "run" / "config.toml"
    full = saved.read_text()
    for p in (tmp_path / "run").glob("step-000000006.*"):
        p.unlink()
    for cut in (100, 40, len(full) - 5):
        saved.write_text(full[:cut])
        caplog.clear()
        assert main(["train", str(config), "--no-progress"]) == 0
        assert "damaged or incomplete" in caplog.text
        assert saved.read_text() == full


def test_the_same_folder_spelled_differently_is_the_same_run(tmp_path, monkeypatch, capsys):
    config = _config(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(config), "--no-progress", "--output", "run"]) == 0
    assert main(["train", str(config), "--no-progress",
                 "--output", str((tmp_path / "run").resolve())]) == 0
    other = _config(tmp_path, TINY.replace("lr = 0.01", "lr = 0.02"), "other.toml")
    assert main(["train", str(other), "--no-progress", "--output", "run"]) == 2
    assert "differs in ['optimizer']" in capsys.readouterr().err


def test_infer_plot_goes_inside_the_run_folder(tmp_path, capsys):
    assert main(["train", str(_config(tmp_path)), "--no-progress"]) == 0
    run = tmp_path / "run"
    assert main(["infer", str(run), "--num-starts", "4", "--plot"]) == 0
    assert (run / "minima.png").is_file()
    assert main(["infer", str(run), "--num-starts", "4", "--plot", "m.png"]) == 0
    assert (run / "m.png").is_file()
    assert f"figure written to {run / 'm.png'}" in capsys.readouterr().out


def test_tensorboard_table(tmp_path, capsys):
    text = TINY + "\n[logging]\ntensorboard = true\n"
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        assert main(["train", str(_config(tmp_path, text)), "--no-progress"]) == 2
        assert "pip install 'ebmlab[tensorboard]'" in capsys.readouterr().err
        assert not (tmp_path / "run").exists()
    else:
        assert main(["train", str(_config(tmp_path, text)), "--no-progress"]) == 0
        assert any((tmp_path / "run" / "tensorboard").iterdir())
    with pytest.raises(ConfigError, match="did you mean 'tensorboard'"):
        _build(tmp_path, TINY + "\n[logging]\ntensorbord = true\n")
