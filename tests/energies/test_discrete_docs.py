"""docs/discrete.md runs block by block; the discrete examples run as tiny subprocesses."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "discrete.md"


def test_discrete_doc_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 6
    namespace: dict[str, object] = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/discrete.md block {i}", "exec"), namespace)
    est = namespace["est"]
    assert abs(est.value.item() - namespace["exact_log_z"]) < 4.5 * est.stderr.item()


@pytest.mark.slow
@pytest.mark.parametrize("script", ["rbm_digits.py", "digit_strings.py"])
def test_example_runs_quick(script, tmp_path, monkeypatch, capsys):
    # In-process (runpy) rather than a subprocess: a fresh interpreter pays torch's import
    # again, which dominates these tiny runs on a loaded two-core machine.
    pytest.importorskip("sklearn")
    monkeypatch.setattr(sys, "argv", [script, "--quick", "--out", str(tmp_path)])
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    runpy.run_path(str(ROOT / "examples" / script), run_name="__main__")
    out = capsys.readouterr().out
    assert "accuracy" in out or "digits" in out
    assert list(tmp_path.glob("*.png"))
