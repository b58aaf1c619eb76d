"""Which registered implementations use each module of ``impls/``, read statically from the sources.

Nothing here imports ``impls``: a mutated copy may not even import, and the map
must come from the pristine sources. An implementation uses its own module and
everything that module imports from the package, transitively; the registry
module, through which every implementation is found, is used by all of them.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "impls"
REGISTRY_MODULE = "impls.registry"  # defines REGISTRY (name -> (module, class, framework)) and DEFAULT


def module_name(path: Path, root: Path) -> str:
    """``impls/np_fast.py`` -> ``impls.np_fast`` (``root`` is the repository root)."""
    rel = path.resolve().relative_to(root.resolve()).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def package_modules(root: Path) -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(p, root): p for p in sorted((root / PACKAGE).glob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package modules ``path`` imports (absolute, relative, ``from impls import mod``, parent packages)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([PACKAGE] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    parents = {".".join(name.split(".")[:i]) for name in found for i in range(1, name.count(".") + 1)}
    return (found | parents) & known  # importing impls.x runs impls/__init__.py too


def _closure(start: str, graph: dict[str, set[str]]) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in graph.get(todo.pop(), set()) - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def _literal(root: Path, name: str):
    """The literal value assigned to ``name`` at the top level of the registry module."""
    path = root / (REGISTRY_MODULE.replace(".", "/") + ".py")
    for node in ast.parse(path.read_text()).body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        if isinstance(target, ast.Name) and target.id == name and node.value is not None:
            return ast.literal_eval(node.value)
    raise ValueError(f"{path} assigns no literal {name}")


def registry(root: Path) -> dict[str, str]:
    """Implementation name -> its module, from the registry's source."""
    return {name: entry[0] for name, entry in _literal(root, "REGISTRY").items()}


def default_impls(root: Path) -> tuple[str, ...]:
    """What a plain comparison runs (the registry's DEFAULT)."""
    return tuple(_literal(root, "DEFAULT"))


def users(root: Path) -> dict[str, tuple[str, ...]]:
    """Module -> the implementations that use it, in registry order (every module of the package is a key)."""
    modules = package_modules(root)
    graph = {name: imports_of(path, set(modules)) for name, path in modules.items()}
    entries = registry(root)
    used = {name: _closure(module, graph) for name, module in entries.items()}
    return {m: tuple(i for i in entries if m in used[i] or m == REGISTRY_MODULE) for m in modules}


SPEC_MODULE = "impls.spec"
SPEC_GROUP = "impls.spec (the oracle's too)"  # reported apart, outside the score: see report.SPEC_NOTE


def group(module: str, using: tuple[str, ...], everything: tuple[str, ...]) -> str:
    """The report's group of a module: the spec apart, ``shared`` when every implementation uses it, else the
    module."""
    if module == SPEC_MODULE:
        return SPEC_GROUP
    return "shared" if using and set(using) == set(everything) else module
