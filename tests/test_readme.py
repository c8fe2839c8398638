"""Every ```python block of the README runs, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 5
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], "README quick start", "exec"), namespace)
    # The quick start's claim: both branches y = ±√x for each input.
    assert namespace["res"].count.tolist() == [2, 2]
    for i, code in enumerate(blocks[1:], start=1):
        try:
            exec(compile(code, f"README block {i}", "exec"), namespace)
        except Exception as err:  # pragma: no cover - the message names the block
            raise AssertionError(f"README python block {i} failed:\n{code}") from err
