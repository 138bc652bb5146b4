"""The package's layout holds: imports go one way and never in a circle, the remote code stands alone, no private
name crosses a module boundary, nothing is defined twice, and the packaging lists every subpackage.

Read from the source with `ast` (nothing is imported), so an import hidden inside a function counts as well.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jmlr_hf"

# What each part of the package may import from jmlr_hf (besides itself): models ← retrieval, data, evaluation ←
# trainer, hub ← scripts, cli. `None` means anything.
ALLOWED = {
    "jmlr_hf": {"models", "trainer", "retrieval", "evaluation", "data", "hub"},  # the public API (lazy re-exports)
    "utils": set(),
    "losses": set(),
    "models": {"utils"},
    "data": {"models", "utils"},
    "retrieval": {"models", "utils"},
    "evaluation": {"models", "data", "retrieval", "losses", "utils"},  # losses: the agreement diagnostic
    "trainer": {"models", "losses", "evaluation", "utils"},
    "hub": {"models", "retrieval", "data", "utils"},
    "scripts": None,
    "cli": None,
}
REMOTE_CODE = ("jmlr_hf.models.configuration_jmlr", "jmlr_hf.models.modeling_jmlr", "jmlr_hf.models.retrieval_jmlr")
# Top-level imports the remote code may make: what `trust_remote_code` users are guaranteed to have.
REMOTE_CODE_ROOTS = {
    "__future__",
    "collections",
    "contextlib",
    "copy",
    "dataclasses",
    "glob",
    "hashlib",
    "json",
    "os",
    "string",
    "typing",
    "warnings",
    "torch",
    "transformers",
    "huggingface_hub",  # a dependency of transformers, as numpy is
    "numpy",
}
# Imported inside the one method that needs each, with an error naming the install: optional for remote-code users
# (faiss and pyarrow to retrieve; jmlr_hf's own modules only where it is installed, with a fallback).
REMOTE_CODE_OPTIONAL = {
    "peft",
    "safetensors",
    "faiss",
    "pyarrow",
    "jmlr_hf.retrieval.index",
    "jmlr_hf.utils.demo_models",
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (for `from X import y`: X.y when that is a module, else X)
    names: tuple[str, ...]  # the names taken with `from X import ...`
    top_level: bool
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(name, alias.name, (), id(node) in top_level, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            names = tuple(alias.name for alias in node.names)
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            for submodule in submodules:
                found.append(Import(name, submodule, (), id(node) in top_level, node.lineno))
            if len(submodules) < len(names):
                found.append(Import(name, target, names, id(node) in top_level, node.lineno))
    return found


def all_imports() -> list[Import]:
    modules = package_modules()
    return [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]


def part(module: str) -> str:
    """The part of the package a module belongs to: `models`, `trainer`, ... (`jmlr_hf` for the root package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "jmlr_hf"


def test_the_import_graph_has_no_cycle():
    modules = package_modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in all_imports():
        if imp.target in modules and imp.target != imp.source:
            graph[imp.source].add(imp.target)
    # Depth-first search with three colours; a grey node reached again closes a cycle.
    colour: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in colour:
                visit(nxt)
        stack.pop()
        colour[node] = 2

    for node in sorted(modules):
        if node not in colour:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_imports_go_one_way():
    wrong = []
    for imp in all_imports():
        if not imp.target.startswith("jmlr_hf"):
            continue
        source, target = part(imp.source), part(imp.target)
        if imp.source in REMOTE_CODE and imp.target in REMOTE_CODE_OPTIONAL:
            continue  # checked by test_remote_code_stands_alone
        allowed = ALLOWED[source]
        if target != source and allowed is not None and target not in allowed:
            wrong.append(f"{imp.source} (line {imp.line}) imports {imp.target}: {source} may not import {target}")
    assert not wrong, "\n".join(wrong)


def test_every_part_of_the_package_has_a_rule():
    assert {part(name) for name in package_modules()} == set(ALLOWED)


def test_remote_code_stands_alone():
    """`save_pretrained` copies the two files into every checkpoint: at import they may need only torch,
    transformers and each other; anything else is imported inside the one method that needs it."""
    problems = []
    for imp in all_imports():
        if imp.source not in REMOTE_CODE:
            continue
        if imp.target in REMOTE_CODE:
            continue
        root = imp.target.split(".")[0]
        if imp.top_level and root not in REMOTE_CODE_ROOTS:
            problems.append(f"{imp.source} line {imp.line}: top-level import of {imp.target}")
        if (
            not imp.top_level
            and root not in REMOTE_CODE_ROOTS
            and not any(imp.target == opt or imp.target.startswith(opt + ".") for opt in REMOTE_CODE_OPTIONAL)
        ):
            problems.append(f"{imp.source} line {imp.line}: imports {imp.target}")
    assert not problems, "\n".join(problems)


def test_no_private_name_crosses_a_module_boundary():
    crossing = []
    for imp in all_imports():
        if not imp.target.startswith("jmlr_hf") or imp.target == imp.source:
            continue
        private = [n for n in imp.names if n.startswith("_") and n != "__version__"]
        if private:
            crossing.append(f"{imp.source} line {imp.line} imports {private} from {imp.target}")
        # A private module (`data/_loading.py`) serves its own subpackage only.
        owner = imp.target.rsplit(".", 1)[0]
        is_private_module = any(p.startswith("_") for p in imp.target.split("."))
        if is_private_module and not (imp.source == owner or imp.source.startswith(owner + ".")):
            crossing.append(f"{imp.source} line {imp.line} imports the private module {imp.target}")
    assert not crossing, "\n".join(crossing)


def top_level_definitions(path: Path) -> list[str]:
    names = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names.extend(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [name for name in names if name not in ("__all__", "logger", "main")]


def test_no_definition_is_repeated_across_modules():
    """One definition of each function, class and constant in the package and the research code."""
    where: dict[str, list[str]] = defaultdict(list)
    sources = [*PACKAGE.rglob("*.py"), *(path for path in (ROOT / "experiments").glob("*.py"))]
    for path in sources:
        for name in top_level_definitions(path):
            where[name].append(str(path.relative_to(ROOT)))
    repeated = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert not repeated, repeated


def test_the_packaging_lists_every_subpackage():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    on_disk = {module_name(path.parent / "__init__.py") for path in PACKAGE.rglob("__init__.py")}
    mapped = set(config.get("package-dir", {}))
    assert set(config["packages"]) == on_disk | mapped
    for package, folder in config.get("package-dir", {}).items():
        assert (ROOT / folder / "__init__.py").exists(), f"{package} maps to {folder}, which is not a package"


def test_research_code_is_outside_the_package():
    assert not list(PACKAGE.rglob("experiment*.py")) and not list(PACKAGE.rglob("headroom*.py"))
    assert (ROOT / "experiments" / "jmlr_vs_rag.py").exists() and (ROOT / "experiments" / "headroom.py").exists()


@pytest.mark.parametrize(
    "name",
    ["JMLRConfig", "JMLRForCausalLM", "JointRetrievalConfig", "JointRetrievalTrainer", "DocumentIndex", "load_index"],
)
def test_the_public_api(name):
    import jmlr_hf

    assert name in jmlr_hf.__all__ and getattr(jmlr_hf, name) is not None
