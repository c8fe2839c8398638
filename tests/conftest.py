"""Shared test setup: float64 by default and a fixed, overridable, reported seed."""

from __future__ import annotations

import os

import pytest
import torch

SEED = int(os.environ.get("EBMLAB_TEST_SEED", "1234"))

# The suite runs as two pytest workers on two cores; a second torch thread per worker only
# oversubscribes them (tiny tensors run 10-50x slower).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _float64_and_seed(request: pytest.FixtureRequest):
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(SEED)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU generator seeded from EBMLAB_TEST_SEED (default 1234)."""
    return torch.Generator().manual_seed(SEED)


def pytest_report_header(config: pytest.Config) -> str:
    return f"ebmlab test seed: {SEED} (set EBMLAB_TEST_SEED to change)"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.sections.append(("ebmlab", f"seed: EBMLAB_TEST_SEED={SEED}"))
