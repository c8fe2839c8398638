"""mkdocs hooks of the ebmlab site: gallery pages from examples/*.py, links to repository files.

* Every ``examples/*.py`` becomes ``gallery/<name>.md``: its docstring, how to run it, the figure
  (``docs/figures/gallery/<name>.png`` when present) and the code; ``gallery/index.md`` lists
  them. The scripts themselves are run by ``tests/examples`` (``make test``).
* A guide's link to a repository file outside ``docs/`` (``../README.md``, ``../src/...``,
  ``../examples/...``) points to the file on the repository site when the file exists; a link to
  a file that does not exist is left alone, so ``--strict`` still fails on it.
* A guide listed in ``nav`` that is not written yet is left out of the navigation (logged).
"""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

__all__ = ["on_config", "on_files", "on_page_markdown"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
log = logging.getLogger("mkdocs.hooks.ebmlab")
_LINK = re.compile(r"\]\((\.\./[^)#\s]+)(#[^)\s]*)?\)")


def _drop_missing(nav: Any, docs: Path) -> Any:
    if isinstance(nav, list):
        kept = [_drop_missing(item, docs) for item in nav]
        return [item for item in kept if item is not None]
    if isinstance(nav, dict):
        out = {k: _drop_missing(v, docs) for k, v in nav.items()}
        return {k: v for k, v in out.items() if v not in (None, [])} or None
    if isinstance(nav, str) and nav.endswith(".md") and not nav.startswith("gallery/"):
        if not (docs / nav).is_file():
            log.info("nav: %s is not written yet; left out", nav)
            return None
    return nav


def _google_example_sections() -> None:
    """Read ``Example:`` (ebmlab's spelling, STYLE.md) as griffe's ``Examples:`` code section."""
    try:
        from griffe import DocstringSectionKind
        from griffe._internal.docstrings import google
    except ImportError:  # another griffe layout: the admonition reading stays
        return
    google._section_kind.setdefault("example", DocstringSectionKind.examples)


def on_config(config: Any) -> Any:
    _google_example_sections()
    config["nav"] = _drop_missing(config["nav"], Path(config["docs_dir"]))
    return config


def _escape(text: str) -> str:
    """Keep ``[--flag N]`` usage text from reading as Markdown reference links."""
    return text.replace("[", "\\[").replace("]", "\\]")


def _docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text())) or ""


def _gallery_page(path: Path) -> str:
    doc = _docstring(path)
    title, _, body = doc.partition("\n")
    name = path.stem
    lines = [f"# {name}", "", f"**{_escape(title.strip())}**", "", _escape(body.strip()), "",
             "```bash", f"python examples/{path.name} --out runs/examples   # --quick: tiny sizes",
             "```", ""]
    if (ROOT / "docs" / "figures" / "gallery" / f"{name}.png").is_file():
        lines += [f"![{name}](../figures/gallery/{name}.png)", ""]
    lines += ["```python", path.read_text().rstrip(), "```", ""]
    return "\n".join(lines)


def on_files(files: Files, config: Any) -> Files:
    scripts = sorted(EXAMPLES.glob("*.py"))
    rows = ["# Gallery", "",
            "One runnable script per capability, in `examples/`. Each writes its figure into "
            "`--out` (default `runs/examples`) and prints a short result; `--quick` runs it at "
            "tiny sizes, which is how `make test` runs every one of them.", "",
            "| script | what it shows |", "|---|---|"]
    for path in scripts:
        title = _docstring(path).partition("\n")[0].strip()
        rows.append(f"| [{path.stem}]({path.stem}.md) | {_escape(title)} |")
        files.append(File.generated(config, f"gallery/{path.stem}.md",
                                    content=_gallery_page(path)))
    rows += ["", "The lecture as a notebook, executed by the tests: "
             f"[examples/lecture.ipynb]({config['repo_url'].rstrip('/')}/blob/main/examples/"
             "lecture.ipynb)."]
    files.append(File.generated(config, "gallery/index.md", content="\n".join(rows) + "\n"))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    base = (Path(config["docs_dir"]) / page.file.src_path).parent
    repo = config["repo_url"].rstrip("/")

    def rewrite(match: re.Match[str]) -> str:
        target = (base / match.group(1)).resolve()
        try:
            relative = target.relative_to(ROOT)
        except ValueError:
            return match.group(0)
        if relative.parts[:1] == ("docs",) or not target.exists():
            return match.group(0)
        kind = "tree" if target.is_dir() else "blob"
        return f"]({repo}/{kind}/main/{relative.as_posix()}{match.group(2) or ''})"

    return _LINK.sub(rewrite, markdown)
