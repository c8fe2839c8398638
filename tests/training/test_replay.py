"""ReplayBuffer: determinism, re-initialisation fraction, update/push, save and restore."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file, save_file

import ebmlab as eb

BOX = eb.Box([-1.0, -2.0], [1.0, 2.0])


def test_deterministic_under_a_generator():
    draws = []
    for _ in range(2):
        buffer = eb.training.ReplayBuffer(50, BOX)
        g = torch.Generator().manual_seed(3)
        y0, index = buffer.sample(20, generator=g)
        buffer.update(index, y0 + 1.0)
        draws.append(buffer.sample(20, generator=g))
    assert torch.equal(draws[0][0], draws[1][0]) and torch.equal(draws[0][1], draws[1][1])


def test_reinit_fraction(generator):
    buffer = eb.training.ReplayBuffer(100, BOX, reinit_fraction=0.0)
    y0, index = buffer.sample(64, generator=generator)
    buffer.update(index, torch.full_like(y0, 7.0))  # mark the slots that were drawn
    y1, index1 = buffer.sample(200, generator=generator)
    assert torch.equal(y1, buffer.data[index1])  # fraction 0: every row comes from the store
    everything_fresh = eb.training.ReplayBuffer(100, BOX, reinit_fraction=1.0)
    everything_fresh.data.fill_(7.0)
    everything_fresh.is_filled.fill_(True)
    y2, _ = everything_fresh.sample(200, generator=generator)
    assert bool(BOX.contains(y2).all())  # fraction 1: no row is a (marked) stored one
    # Fraction 0.3 of n = 4000 rows: the count of fresh rows is Binomial(n, 0.3), sd =
    # sqrt(n 0.3 0.7) = 29; we accept 4.5 sd.
    buffer = eb.training.ReplayBuffer(100, BOX, reinit_fraction=0.3)
    buffer.sample(1, generator=generator)
    buffer.data.fill_(7.0)
    y3, _ = buffer.sample(4000, generator=generator)
    fresh = int((y3[:, 0] != 7.0).sum())
    assert abs(fresh - 1200) < 4.5 * math.sqrt(4000 * 0.21)


def test_push_is_a_ring(generator):
    buffer = eb.training.ReplayBuffer(4, BOX)
    buffer.push(torch.zeros(3, 2), generator=generator)
    buffer.push(torch.ones(2, 2), generator=generator)
    assert buffer.data[:, 0].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert int(buffer.position) == 1


def test_state_dict_round_trip_through_safetensors(tmp_path, generator):
    buffer = eb.training.ReplayBuffer(30, BOX)
    y0, index = buffer.sample(10, generator=generator)
    buffer.update(index, y0 * 0.5)
    save_file(buffer.state_dict(), str(tmp_path / "buffer.safetensors"))
    restored = eb.training.ReplayBuffer(30, BOX)
    restored.load_state_dict(load_file(str(tmp_path / "buffer.safetensors")))
    assert torch.equal(restored.data, buffer.data)
    state = generator.get_state()
    a = buffer.sample(10, generator=generator)
    generator.set_state(state)
    b = restored.sample(10, generator=generator)
    assert torch.equal(a[0], b[0])


def test_callable_init_and_errors(generator):
    buffer = eb.training.ReplayBuffer(
        8, lambda n, g: torch.randn(n, 3, generator=g), y_shape=(3,))
    y0, _ = buffer.sample(5, generator=generator)
    assert y0.shape == (5, 3)
    with pytest.raises(ValueError, match="capacity"):
        eb.training.ReplayBuffer(0, BOX)
    with pytest.raises(ValueError, match="reinit_fraction"):
        eb.training.ReplayBuffer(10, BOX, reinit_fraction=1.5)
    with pytest.raises(ValueError, match="y_shape is required"):
        eb.training.ReplayBuffer(10, lambda n, g: torch.zeros(n, 2))
    with pytest.raises(ValueError, match="samples must have shape"):
        buffer.update(torch.arange(2), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="shape"):
        buffer.load_state_dict({"data": torch.zeros(3, 3), "position": torch.zeros(1),
                                "is_filled": torch.zeros(1)})
    bad = eb.training.ReplayBuffer(8, lambda n, g: torch.zeros(n, 2), y_shape=(3,))
    with pytest.raises(ValueError, match="init returned"):
        bad.sample(2, generator=generator)


def test_old_samplers_path_still_works_with_a_warning():
    with pytest.warns(DeprecationWarning, match="ebmlab.training.ReplayBuffer"):
        assert eb.samplers.ReplayBuffer is eb.training.ReplayBuffer


def test_data_restarts_draw_training_rows():
    from ebmlab.training.replay import DataRestarts, ReplayBuffer

    data = torch.arange(10.0).reshape(5, 2)
    starts = DataRestarts(data)
    rows = starts(50, torch.Generator().manual_seed(0))
    assert rows.shape == (50, 2)
    assert all(any(torch.equal(r, d) for d in data) for r in rows)
    buffer = ReplayBuffer(8, starts, reinit_fraction=1.0, y_shape=(2,))
    y0, _ = buffer.sample(6, generator=torch.Generator().manual_seed(1))
    assert all(any(torch.equal(r, d) for d in data) for r in y0)
    with pytest.raises(ValueError, match="data"):
        DataRestarts(torch.zeros(0, 2))
