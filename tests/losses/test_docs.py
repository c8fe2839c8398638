"""The examples of docs/losses.md run, and every line they print as ``# True`` is True."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "losses.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_doc_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_example_runs(index):
    code = BLOCKS[index]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"{DOC.name}[{index}]", "exec"), {"__name__": "__doc_example__"})
    printed = out.getvalue().splitlines()
    expected = [
        line.split("# ", 1)[1].split(":")[0].strip()
        for line in code.splitlines()
        if line.lstrip().startswith("print(") and "# " in line
    ]
    assert len(printed) == len(expected)
    for got, want in zip(printed, expected, strict=True):
        assert got.replace(" ", "") == want.replace(" ", ""), (got, want)
