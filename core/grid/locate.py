"""Find a trainable function: checked without importing (parent), loaded for real (worker).

A reference is `package.module:function` (searched on the grid folder, then this Python's own path) or
`path/to/file.py:function` (relative to the grid folder). The parent checks it and the worker imports it
through the same `search_path`, so both mean the same module: never one from the current folder by chance.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


class LocateError(ValueError):
    pass


def split_ref(ref: str) -> tuple[str, str]:
    where, sep, func = ref.rpartition(":")
    if not sep or not where or not func:
        raise LocateError(f"{ref!r} must look like 'package.module:function' or 'path/file.py:function'")
    if not func.isidentifier():
        raise LocateError(f"{func!r} is not a function name")
    return where, func


def search_path(base: str | Path) -> list[str]:
    """Where `package.module` is looked up: the grid's folder first, then this interpreter's own path
    without the current folder or the running script's folder (workers start with -P, which drops them)."""
    own = list(sys.path) if sys.flags.safe_path else list(sys.path[1:])
    return [str(base), *(p for p in own if p and p != str(base))]


def is_file_ref(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


def check_trainable(ref: str, base: Path) -> str:
    """Validate a reference without running any of its code; return its normalized form."""
    where, func = split_ref(ref)
    if is_file_ref(where):
        file = (base / where).expanduser().resolve()
        if not file.is_file():
            raise LocateError(f"no such file: {file}")
        _check_defines(file, func)
        return f"{file}:{func}"
    origin = _find_module_file(where, search_path(base))
    if origin is not None and origin.suffix == ".py":
        _check_defines(origin, func)
    return f"{where}:{func}"


def module_file(dotted: str, base: str | Path) -> Path | None:
    """The source file of module `dotted` as the worker would import it (None for a namespace or binary)."""
    origin = _find_module_file(dotted, search_path(Path(base)))
    return origin if origin is not None and origin.suffix == ".py" else None


def _find_module_file(dotted: str, search: list[str]) -> Path | None:
    parts = dotted.split(".")
    if not all(p.isidentifier() for p in parts):
        raise LocateError(f"{dotted!r} is not a module path")
    path: list[str] | None = search
    spec = None
    for i, part in enumerate(parts):
        spec = importlib.machinery.PathFinder.find_spec(part, path)
        if spec is None and i == 0:
            spec = _meta_path_spec(part)  # editable installs answer through meta-path finders
        if spec is None:
            missing = ".".join(parts[: i + 1])
            hint = ""
            if parts[0] == "core" and len(parts) > 1 and parts[1] == "demo":
                hint = f"; the demo trainables are gridwatch.demo:{parts[-1] if len(parts) > 2 else 'mlp'}"
            raise LocateError(f"cannot import {missing!r}: not found next to the grid file or on the "
                              f"Python path{hint}")
        path = list(spec.submodule_search_locations or [])
        if i < len(parts) - 1 and not path:
            raise LocateError(f"cannot import {dotted!r}: {'.'.join(parts[: i + 1])!r} is not a package")
    return Path(spec.origin) if spec is not None and spec.origin else None


def _meta_path_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """Ask the meta-path finders other than the plain path finder (which already looked, on search_path)."""
    for finder in sys.meta_path:
        if finder is not importlib.machinery.PathFinder and hasattr(finder, "find_spec"):
            spec = finder.find_spec(name, None)
            if spec is not None:
                return spec
    return None


def _check_defines(file: Path, func: str) -> None:
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
    except (OSError, UnicodeDecodeError) as exc:
        raise LocateError(f"cannot read {file}: {exc}") from None
    except SyntaxError as exc:
        raise LocateError(f"{file}:{exc.lineno}: syntax error: {exc.msg}") from None
    if func not in _top_level_names(tree):
        raise LocateError(f"no function {func!r} defined in {file}")


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


_loaded: dict[str, Callable[..., Any]] = {}


def load_trainable(target: str, search_dir: str) -> Callable[..., Any]:
    """Import the function for real (in the worker). Cached: a slot's worker imports each module once."""
    if target in _loaded:
        return _loaded[target]
    where, func = split_ref(target)
    sys.path[:] = search_path(search_dir)
    importlib.invalidate_caches()
    if is_file_ref(where):
        module = _import_file(Path(where))
    else:
        module = importlib.import_module(where)
    fn = getattr(module, func, None)
    if not callable(fn):
        raise LocateError(f"{where} has no callable {func!r}")
    _loaded[target] = fn
    return fn


def _import_file(file: Path) -> Any:
    name = f"gridwatch_user_{abs(hash(str(file))):x}_{file.stem}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise LocateError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    if str(file.parent) not in sys.path:
        sys.path.insert(0, str(file.parent))
    spec.loader.exec_module(module)
    return module
