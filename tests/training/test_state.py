"""training/state.py: the training state into and out of a checkpoint."""

from __future__ import annotations

import pytest
import torch

import ebmlab as eb
from ebmlab.training import state
from ebmlab.training.negatives import Sampled, Shuffled
from ebmlab.training.run import History

BOX = eb.Box([-2.0, -2.0], [2.0, 2.0])


def _parts(seed: int):
    torch.manual_seed(seed)
    energy = eb.energies.MLPEnergy(2, hidden=(8,))
    opt = torch.optim.Adam(energy.parameters(), lr=0.01)
    negatives = Sampled(num_steps=2, step_size=0.01, init="buffer", domain=BOX, buffer_size=16)
    generator = torch.Generator().manual_seed(seed)
    return energy, opt, negatives, generator


def test_save_then_resume_restores_every_part(tmp_path):
    energy, opt, negatives, generator = _parts(0)
    y = torch.randn(8, 2)
    negatives(energy, y, generator=generator)  # fills the buffer, moves the generator
    energy(y).sum().backward()
    opt.step()
    history = History(records=[{"step": 1, "loss": 0.5}])
    path = state.save(tmp_path, 1, energy, opt, None, negatives, generator, history, keep=2)
    assert history.checkpoint == path

    energy2, opt2, negatives2, generator2 = _parts(1)
    negatives2(energy2, y, generator=torch.Generator().manual_seed(5))
    history2 = History()
    start, latest = state.resume(tmp_path, True, energy2, opt2, None, negatives2, generator2,
                                 history2, seed=0)
    assert (start, latest, history2.resumed_from) == (1, path, 1)
    assert history2.records == history.records
    for a, b in zip(energy.state_dict().values(), energy2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(negatives.buffer.data, negatives2.buffer.data)
    assert torch.equal(generator.get_state(), generator2.get_state())


def test_resume_refuses_an_old_run_without_resume(tmp_path):
    energy, opt, negatives, generator = _parts(0)
    state.save(tmp_path, 3, energy, opt, None, negatives, generator, History(), keep=1)
    with pytest.raises(ValueError, match="resume=True"):
        state.resume(tmp_path, False, energy, opt, None, negatives, generator, History(), 0)
    assert state.resume(None, True, energy, opt, None, negatives, generator, History(), 0) == (
        0, None)


def test_is_stateful_is_the_one_duck_test():
    assert state.is_stateful(Sampled(init="buffer"))
    assert not state.is_stateful(Shuffled())
