"""Every ```python block of docs/samplers.md runs, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "samplers.md"


def test_samplers_doc_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 4
    namespace: dict[str, object] = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/samplers.md block {i}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "torch.Size([200, 64, 2])" in out
    assert "['data', 'is_filled', 'position']" in out
    assert 0.4 < namespace["summary"]["acceptance_rate"] < 0.75
