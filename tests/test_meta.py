"""The project's own rules, checked: exports, layers, invariants cited and tested."""

from __future__ import annotations

import ast
import os
import re
import sys
from pathlib import Path

import fencepost
import fencepost.core
import fencepost.errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src", "fencepost")


def _modules(sub: str) -> list[str]:
    out = []
    for dirpath, _, files in os.walk(os.path.join(SRC, sub)):
        out += [os.path.join(dirpath, f) for f in files if f.endswith(".py")]
    return out


def _imports(path: str) -> list[tuple[str, int]]:
    """(absolute module name, level) of every import in a file."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, 0) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


def _resolve(path: str, module: str, level: int) -> str:
    if level == 0:
        return module
    pkg = os.path.relpath(os.path.dirname(path), os.path.dirname(SRC)).split(os.sep)
    base = pkg[: len(pkg) - (level - 1)]
    return ".".join([*base, module] if module else base)


def test_every_name_in_all_exists_and_public_names_are_exported():
    for mod in (fencepost, fencepost.core, fencepost.errors):
        for name in mod.__all__:
            assert hasattr(mod, name), f"{mod.__name__}.__all__ names missing {name}"
        public = {
            n
            for n, v in vars(mod).items()
            if not n.startswith("_")
            and type(v).__name__ != "module"
            and str(getattr(v, "__module__", "fencepost")).startswith("fencepost")
        }
        extra = public - set(mod.__all__) - {"annotations"}
        assert not extra, f"{mod.__name__} has public names not in __all__: {sorted(extra)}"
    assert set(fencepost.core.__all__) <= set(fencepost.__all__)
    assert set(fencepost.errors.__all__) <= set(fencepost.__all__)


def test_the_core_imports_only_the_standard_library_and_errors():
    stdlib = sys.stdlib_module_names
    for path in _modules("core"):
        for module, level in _imports(path):
            name = _resolve(path, module, level)
            top = name.split(".")[0]
            if top == "fencepost":
                assert name.startswith(("fencepost.core", "fencepost.errors")), (path, name)
            else:
                assert top in stdlib or top == "__future__", f"{path} imports {name}"


def test_the_surface_uses_only_public_names_of_the_layers_below():
    for path in _modules("surface"):
        for module, level in _imports(path):
            name = _resolve(path, module, level)
            if name.startswith(("fencepost.core", "fencepost.runtime")):
                parts = name.split(".")
                assert not any(p.startswith("_") for p in parts[2:]), f"{path} imports {name}"


def test_the_runtime_uses_only_public_names_of_the_core_and_never_the_surface():
    for path in _modules("runtime"):
        for module, level in _imports(path):
            name = _resolve(path, module, level)
            assert not name.startswith("fencepost.surface"), f"{path} imports {name}"
            if name.startswith("fencepost.core"):
                parts = name.split(".")
                assert not any(p.startswith("_") for p in parts[2:]), f"{path} imports {name}"


def test_errors_is_a_leaf_module():
    for module, level in _imports(os.path.join(SRC, "errors.py")):
        assert level == 0 and module.split(".")[0] in sys.stdlib_module_names | {"__future__"}


def test_every_error_has_the_fencepost_root():
    for name in fencepost.errors.__all__:
        obj = getattr(fencepost.errors, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            if name == "FencepostInternalError":
                assert not issubclass(obj, fencepost.FencepostError)
            else:
                assert issubclass(obj, fencepost.FencepostError), name


INVARIANT_DEF = re.compile(r"\*\*([A-Z]+-I\d+)\*\*")
INVARIANT_REF = re.compile(r"\b([A-Z]+-I\d+)\b")


def _read_all(folder: str, suffix: str) -> str:
    text = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
        text += [Path(dirpath, f).read_text(encoding="utf-8") for f in files if f.endswith(suffix)]
    return "\n".join(text)


def test_every_invariant_is_defined_once_cited_by_code_and_named_by_a_test():
    docs = _read_all("docs/design", ".md")
    defined = INVARIANT_DEF.findall(docs)
    assert defined, "no invariants found in docs/design"
    dupes = {i for i in defined if defined.count(i) > 1}
    assert not dupes, f"invariants defined twice: {dupes}"
    code_refs = set(INVARIANT_REF.findall(_read_all("src", ".py")))
    test_refs = set(INVARIANT_REF.findall(_read_all("tests", ".py")))
    test_refs.discard("X-I1")
    unknown = (code_refs | test_refs) - set(defined)
    assert not unknown, f"code or tests cite invariants no design page defines: {unknown}"
    untested = set(defined) - test_refs
    assert not untested, f"invariants no test names: {sorted(untested)}"
    uncited = set(defined) - code_refs
    assert not uncited, f"invariants no code cites: {sorted(uncited)}"
