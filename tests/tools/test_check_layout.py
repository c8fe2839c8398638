"""tools/check_layout.py: it passes on the real tree and catches cycles and private names."""

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "check_layout.py"


def load():
    spec = importlib.util.spec_from_file_location("check_layout", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_tree(tmp_path, files):
    for rel, text in files.items():
        path = tmp_path / "ebmlab" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_real_tree_passes():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no import cycle" in result.stdout


def test_a_cycle_through_a_lazy_import_is_caught(tmp_path):
    root = write_tree(tmp_path, {
        "__init__.py": "",
        "a.py": "from ebmlab.b import g\n\ndef f():\n    return g()\n",
        "b.py": "def g():\n    from ebmlab.a import f\n    return f\n",
    })
    errors, _ = load().check(root, 450)
    assert any("import cycle" in e and "ebmlab.a" in e and "ebmlab.b" in e for e in errors)


def test_type_checking_imports_are_not_edges(tmp_path):
    root = write_tree(tmp_path, {
        "__init__.py": "",
        "a.py": "from ebmlab.b import g\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ebmlab.a import g\n"
                "def g():\n    pass\n",
    })
    errors, _ = load().check(root, 450)
    assert errors == []


def test_private_names_across_modules_are_caught_but_shared_ones_allowed(tmp_path):
    root = write_tree(tmp_path, {
        "__init__.py": "",
        "_checks.py": "def _helper():\n    pass\n",
        "a.py": "def _secret():\n    pass\n",
        "b.py": "from ebmlab.a import _secret\nfrom ebmlab._checks import _helper\n",
        "pkg/__init__.py": "",
        "pkg/_common.py": "def _shared():\n    pass\n",
        "pkg/c.py": "from ebmlab.pkg._common import _shared\n",
        "d.py": "from ebmlab.pkg._common import _shared\n",
    })
    errors, _ = load().check(root, 450)
    assert len([e for e in errors if "'_secret'" in e]) == 1
    assert not any("'_helper'" in e for e in errors)
    # a package's own _common serves that package only
    assert any("ebmlab.d" in e and "_shared" in e for e in errors)
    assert not any("into ebmlab.pkg.c" in e for e in errors)


def test_long_files_and_functions_warn(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(130))
    root = write_tree(tmp_path, {"__init__.py": "", "a.py": f"def f():\n{body}\n"})
    errors, warnings = load().check(root, 100)
    assert errors == []
    assert any("a.py" in w and "lines" in w for w in warnings)
    assert any("function f" in w for w in warnings)
