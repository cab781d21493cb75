"""The third-party packages a packed train_gpt.py imports: requirements.txt, and where they live.

Found by reading the embedded sources (ast), never by importing them. An import inside
`try: ... except ImportError` is optional (e.g. brotli) and listed as a comment.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import sys
from pathlib import Path

from golf.selfcontained import ROOTS, Sources

_CATCHES_IMPORT_ERROR = ("ImportError", "ModuleNotFoundError")


def _optional_nodes(tree: ast.AST) -> set[int]:
    """ids of import nodes inside a `try` whose handlers catch ImportError."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                h.type is not None and any(isinstance(n, ast.Name) and n.id in _CATCHES_IMPORT_ERROR
                                           for n in ast.walk(h.type)) for h in node.handlers):
            ids |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
    return ids


def third_party_imports(sources: Sources) -> dict[str, bool]:
    """{top-level module: optional} for every import that is neither stdlib nor golf/quant."""
    found: dict[str, bool] = {}
    for source in [sources.script, *sources.modules.values()]:
        tree = ast.parse(source)
        optional = _optional_nodes(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ROOTS or top == "__future__":
                    continue
                found[top] = found.get(top, True) and id(node) in optional
    return dict(sorted(found.items()))


def _distribution(module: str) -> tuple[str, str | None]:
    """(distribution name, installed version without a local tag like +cpu) for a module."""
    dists = importlib.metadata.packages_distributions().get(module) or [module]
    try:
        version = importlib.metadata.version(dists[0])
    except importlib.metadata.PackageNotFoundError:
        return dists[0], None
    return dists[0], version.split("+")[0]


def requirements_txt(sources: Sources) -> str:
    lines = ["# Third-party packages train_gpt.py imports (versions: those the packing machine had).",
             "# Use the CUDA build of torch on GPUs."]
    for module, optional in third_party_imports(sources).items():
        name, version = _distribution(module)
        line = f"{name}=={version}" if version else name
        lines.append(f"# optional: {line}" if optional else line)
    return "\n".join(lines) + "\n"


def import_roots(sources: Sources) -> list[Path]:
    """The sys.path folders holding the required (non-optional) third-party packages."""
    roots: list[Path] = []
    for module, optional in third_party_imports(sources).items():
        spec = importlib.util.find_spec(module)
        if spec is None:
            if optional:
                continue
            raise ModuleNotFoundError(f"train_gpt.py needs {module}, which is not installed")
        location = list(spec.submodule_search_locations or []) or [spec.origin]
        root = Path(location[0]).resolve().parent
        if root not in roots:
            roots.append(root)
    return roots
