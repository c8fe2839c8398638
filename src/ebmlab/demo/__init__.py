"""``ebmlab demo``: the lecture's pictures on built-in data, one section per module."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from ebmlab.demo.progress import section_bar

__all__ = ["SECTIONS", "run_demo"]

# Section name -> its module under ebmlab.demo. Each module exposes
# ``run(out: Path, quick: bool) -> list[str]`` (the summary lines it prints) and writes its
# figures into ``out``; it may set ``STEPS`` and call ``ebmlab.demo.progress.advance`` after
# each step for its progress bar (without ``STEPS`` the bar is a running clock). The "spine"
# section (inference) keeps its name and figure names.
_MODULES = {
    "spine": "inference",
    "latent": "latent",
    "gibbs": "gibbs",
    "training": "training",
    "samplers": "samplers",
    "images": "images",
    "implicit": "implicit",
}
SECTIONS: list[str] = list(_MODULES)


def run_demo(out: Path, quick: bool = False, sections: list[str] | None = None) -> list[str]:
    """Run every demo section into ``out`` and return the summary lines."""
    out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for name in sections or SECTIONS:
        if name not in SECTIONS:
            raise ValueError(f"unknown demo section {name!r}; choose from {SECTIONS}")
        start = time.perf_counter()
        module = importlib.import_module(f"ebmlab.demo.{_MODULES[name]}")
        with section_bar(name, getattr(module, "STEPS", None)):
            section_lines = module.run(out, quick)
        lines.append(f"== {name} ({time.perf_counter() - start:.1f} s)")
        lines.extend(section_lines)
        print("\n".join(lines[-len(section_lines) - 1 :]), flush=True)
    return lines
