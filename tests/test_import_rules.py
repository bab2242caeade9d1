"""The house's one-way rules, read from the source: every import (function-local ones too) and every SQL string.

Arrows run tasks -> services -> the embedding layer; shared code (common/) imports no app; the two
domains never import each other; nothing but embeddings/ writes SQL on its tables.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.apps import apps

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("common", "config", "devservices", "embeddings", "faq", "tasks", "verifier")
DOMAINS = ("verifier", "faq")
# Forbidden arrows between top-level packages: (importer, imported).
FORBIDDEN = {
    ("verifier", "faq"), ("faq", "verifier"),
    ("verifier", "tasks"), ("faq", "tasks"), ("embeddings", "tasks"), ("common", "tasks"),
    ("embeddings", "verifier"), ("embeddings", "faq"),
    *(("common", package) for package in PACKAGES if package != "common"),
}
# Words of the two domains that the embedding layer must not know.
DOMAIN_WORDS = re.compile(r"faq|\bhs_|hs code|customs|declaration|nomenclature|verifier|tariff|inquir", re.IGNORECASE)


def source_files(package: str, *, with_migrations: bool = True) -> list[Path]:
    return sorted(path for path in (ROOT / package).rglob("*.py")
                  if with_migrations or "migrations" not in path.parts)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Every module name this file imports, at any depth (function-local imports hide circles as well)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            names.add(origin)
            names.update(f"{origin}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """{module: the project modules it imports}, over every module of the project's packages."""
    files = {module_name(path): path for package in PACKAGES for path in source_files(package)}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = set()
        for name in imported_names(path):
            while name and name not in files:  # `from x import function`: the module is x
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph.get(module, ()):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_back_through_others():
    assert circles(import_graph()) == []


def test_the_arrows_run_one_way_between_packages():
    crossings = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items() for target in targets
        if (module.split(".")[0], target.split(".")[0]) in FORBIDDEN
    )
    assert crossings == []


def test_the_embedding_layer_names_no_domain():
    mentions = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
                for path in source_files("embeddings", with_migrations=False)
                for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
                if DOMAIN_WORDS.search(line)]
    assert mentions == []


@pytest.mark.parametrize("package", [package for package in PACKAGES if package != "embeddings"])
def test_no_sql_on_the_embedding_tables_outside_the_embedding_layer(package):
    """Applied migrations are history and keep their SQL; everything else asks embeddings/ instead. (bench/ and
    tests/ set up and inspect scratch databases, which is their job.)"""
    tables = re.compile("|".join(model._meta.db_table for model in apps.get_app_config("embeddings").get_models()))
    mentions = [f"{path.relative_to(ROOT)}:{number}"
                for path in source_files(package, with_migrations=False)
                for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
                if tables.search(line)]
    assert mentions == []


def test_the_rules_see_local_imports_and_circles():
    """The checker itself: a function-local import counts, and a two-module circle is found."""
    assert "verifier.pipeline" in import_graph()["verifier.services"]  # imported inside sweep_stuck_work only
    assert circles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
