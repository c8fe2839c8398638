"""Every ```python block of docs/gibbs.md runs, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "gibbs.md"


def test_gibbs_doc_examples_run():
    import ebmlab as eb

    if not hasattr(eb, "FreeEnergy"):
        pytest.skip("eb.FreeEnergy (issue 3) is not available")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 4
    namespace: dict[str, object] = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/gibbs.md block {i}", "exec"), namespace)
    # The claims printed by the examples.
    assert abs(namespace["ais"].value.item() - namespace["truth"]) < 4 * namespace[
        "ais"
    ].stderr.item()
    assert (namespace["marginal"].log_prob(namespace["y"]) - namespace["summed"]).abs().max() < 1e-6
