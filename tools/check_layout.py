"""Check the layout rules of src/ebmlab: no import cycle, no private name across modules.

Run as ``python tools/check_layout.py`` (``make check-layout``, part of ``make test``). It reads the
source with :mod:`ast` only (nothing is imported) and exits 1 with one line per violation.

Rules (docs/architecture.md):

1. The graph of imports inside ``ebmlab`` has no cycle. Imports inside functions (lazy imports)
   are edges too; only imports under ``if TYPE_CHECKING:`` are not.
2. No module imports a private name (``_name``) from another module, except from the shared
   private modules ``ebmlab._checks``, ``ebmlab._random``, ``ebmlab._compile`` and from a
   package's own ``_common`` module (``ebmlab.losses._common`` serves ``ebmlab.losses``).
3. Files over ``--max-lines`` (450) and functions over ``--max-function-lines`` (120, docstring
   aside) are reported as warnings, not failures, unless the file says why on a line containing
   ``layout: long because``.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "ebmlab"
SHARED_PRIVATE = {"ebmlab._checks", "ebmlab._random", "ebmlab._compile"}


def module_name(path: Path, root: Path) -> str:
    """Return the dotted module name of a source file."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def resolve(module: str, level: int, current: str, is_package: bool) -> str:
    """Return the absolute name of a (possibly relative) import target."""
    if level == 0:
        return module
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def is_type_checking(node: ast.If) -> bool:
    """Whether ``node`` is ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import that can run: module level, in functions (lazy) and in try/if blocks.

    Only imports under ``if TYPE_CHECKING:`` are left out. A lazy import inside a function is
    still an arrow of the graph: hiding a cycle in a function does not remove it.
    """
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and is_type_checking(child):
                for other in child.orelse:
                    visit_stmt(other)
                continue
            visit_stmt(child)

    def visit_stmt(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        visit(node)

    visit(tree)
    return found


def all_imports(tree: ast.Module) -> list[ast.ImportFrom]:
    """Every ``from ... import`` anywhere in the module (for the private-name rule)."""
    return [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]


def owner_package(module: str, modules: dict[str, Path]) -> str:
    """The package a module belongs to (itself for a package's ``__init__``)."""
    if modules[module].name == "__init__.py":
        return module
    return module.rpartition(".")[0]


def private_allowed(target: str, current: str, modules: dict[str, Path]) -> bool:
    """Whether ``current`` may import private names from ``target``."""
    if target in SHARED_PRIVATE or target == current:
        return True
    parent, _, leaf = target.rpartition(".")
    # a package's own _common module serves that package (and its subpackages)
    return leaf == "_common" and (current == parent or current.startswith(parent + "."))


def find_cycle(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                components.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return components


def long_functions(tree: ast.Module, max_lines: int) -> list[tuple[str, int, int]]:
    """Functions whose body, docstring aside, is longer than ``max_lines``."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        first = node.body[0]
        has_doc = isinstance(first, ast.Expr) and isinstance(
            getattr(first, "value", None), ast.Constant
        ) and isinstance(first.value.value, str)
        start = first.end_lineno + 1 if has_doc else node.lineno
        length = node.end_lineno - start + 1
        if length > max_lines:
            found.append((node.name, length, node.lineno))
    return found


def check(
    root: Path, max_lines: int, max_function_lines: int = 120
) -> tuple[list[str], list[str]]:
    """Return (errors, warnings) for the package under ``root``."""
    modules = {module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    errors: list[str] = []
    warnings: list[str] = []
    for name, path in modules.items():
        source = path.read_text()
        tree = ast.parse(source, filename=str(path))
        is_package = path.name == "__init__.py"
        for node in runtime_imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = resolve(node.module or "", node.level, name, is_package)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                # importing ebmlab.a.b runs ebmlab.a's __init__ too, but a package importing its
                # own submodules is the usual layout, not a cycle: record the direct edge only.
                if target in modules and target != name:
                    graph[name].add(target)
        for node in all_imports(tree):
            base = resolve(node.module or "", node.level, name, is_package)
            if not base.startswith(PACKAGE):
                continue
            for alias in node.names:
                is_private = alias.name.startswith("_") and not alias.name.startswith("__")
                if is_private and not private_allowed(base, name, modules):
                    errors.append(
                        f"{path.relative_to(root.parent)}:{node.lineno}: private name "
                        f"{alias.name!r} imported from {base} into {name}"
                    )
            if base != name and base.rpartition(".")[2].startswith("_"):
                if base not in modules:
                    continue
                if not private_allowed(base, name, modules):
                    errors.append(
                        f"{path.relative_to(root.parent)}:{node.lineno}: private module "
                        f"{base} imported into {name}"
                    )
        lines = source.count("\n")
        if lines > max_lines and "layout: long because" not in source:
            warnings.append(f"{path.relative_to(root.parent)}: {lines} lines (> {max_lines})")
        for name_, length, lineno in long_functions(tree, max_function_lines):
            if "layout: long because" not in source:
                warnings.append(
                    f"{path.relative_to(root.parent)}:{lineno}: function {name_} has {length} "
                    f"lines besides its docstring (> {max_function_lines})"
                )
    for component in find_cycle(graph):
        errors.append("import cycle: " + " -> ".join(component + component[:1]))
    return errors, warnings


def main(argv: list[str] | None = None) -> int:
    """Run the checks; print violations; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the src/ folder")
    parser.add_argument("--max-lines", type=int, default=450, help="file size that warns")
    parser.add_argument(
        "--max-function-lines", type=int, default=120, help="function size that warns"
    )
    args = parser.parse_args(argv)
    errors, warnings = check(args.root, args.max_lines, args.max_function_lines)
    for line in warnings:
        print(f"warning: {line}")
    for line in errors:
        print(f"error: {line}")
    if errors:
        print(f"check-layout: {len(errors)} violation(s)")
        return 1
    print("check-layout: no import cycle, no private name across modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
