"""The import rules of docs/architecture.md, checked on the source (no imports executed)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        yield ".".join(path.relative_to(ROOT).with_suffix("").parts), path


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _uses_sys_path(path: Path) -> bool:
    return any(
        isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
        for node in ast.walk(ast.parse(path.read_text()))
    )


def _violations(
    package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()
) -> list[str]:
    found = []
    for module, path in _modules(package):
        for name in _imports(path):
            if name.startswith(forbidden) and not name.startswith(allowed):
                found.append(f"{module} imports {name}")
    return found


def test_the_engine_knows_nothing_of_the_worker_or_http() -> None:
    forbidden = ("server", "starlette", "sse_starlette", "uvicorn", "httpx", "balancer")
    assert _violations("server/engine", forbidden, allowed=("server.engine",)) == []


def test_errors_are_a_leaf_module() -> None:
    assert {n for n in _imports(ROOT / "server/errors.py") if n.startswith("server")} == set()


def test_routes_never_reach_into_the_model() -> None:
    forbidden = ("chatterbox", "torch", "server.engine")
    allowed = ("server.engine.schema", "server.engine.types", "server.engine.text_feed")
    assert _violations("server/routes", forbidden, allowed) == []


def test_the_balancer_never_imports_the_worker() -> None:
    assert _violations("balancer", ("server", "scripts")) == []


def test_the_edge_imports_neither_the_worker_nor_the_balancer() -> None:
    # Both serve with it (edge/), so it must not pull either of them, or the engine, in.
    forbidden = ("server", "balancer", "access", "scripts", "torch", "chatterbox", "starlette")
    assert _violations("edge", forbidden) == []


def test_the_key_gate_imports_neither_the_worker_nor_the_balancer() -> None:
    # Both import it (access/), so it must not pull either of them, or the engine, in.
    forbidden = ("server", "balancer", "scripts", "torch", "chatterbox", "httpx")
    assert _violations("access", forbidden) == []


def test_the_deployment_runs_the_programs_as_processes_and_never_imports_them() -> None:
    assert _violations("deployment", ("server", "balancer", "scripts", "torch", "tests")) == []


def test_packages_never_import_scripts_or_edit_sys_path() -> None:
    assert _violations("server", ("scripts",)) == []
    for package in ("server", "balancer", "access", "deployment"):
        for module, path in _modules(package):
            assert not _uses_sys_path(path), module
