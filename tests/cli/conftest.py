"""Command tests use one CPU thread: small models run fastest so, and resuming needs a fixed
thread count for bit-identical results."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
