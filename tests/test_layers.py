"""The layers hold: what each package of `webhook` may import.

Guards the boundaries the folders show (see webhook/__init__.py): the engine
stays pure (the standard library, itself, and the libraries it must have:
pydantic for the policy model, PyYAML to read the policy, orjson for the
status annotation and the envelope, pybase64 for the patch), the dry run never pulls in the
server, and nothing below the command line imports it. Imports inside
functions count too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "webhook"
ENGINE_THIRD_PARTY = {"pydantic", "yaml", "orjson", "pybase64"}


def imports(path: Path) -> set[str]:
    """Every module `path` imports, as dotted names (relative imports resolved)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            module = node.module or ""
            found.add(module)
            if module == "webhook" or module.startswith("webhook."):
                found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def modules(package: str) -> list[Path]:
    return sorted((PACKAGE / package).glob("*.py"))


def violations(package: str, allowed: set[str], *, internal: tuple[str, ...]) -> list[str]:
    """Imports of `package`'s modules that are neither stdlib, `allowed` nor `internal`."""
    bad = []
    for path in modules(package):
        for name in sorted(imports(path)):
            top = name.split(".")[0]
            if top == "webhook":
                if name != "webhook" and not name.startswith(internal):
                    bad.append(f"{path.name}: {name}")
            elif top not in sys.stdlib_module_names and top not in allowed:
                bad.append(f"{path.name}: {name}")
    return bad


def test_the_engine_imports_only_itself_the_standard_library_and_what_it_must() -> None:
    """Guards the engine's purity."""
    assert violations("engine", ENGINE_THIRD_PARTY, internal=("webhook.engine",)) == []


def test_the_review_never_imports_the_server() -> None:
    """Guards the dry run from pulling in the server (it reads files through `files`)."""
    allowed = ENGINE_THIRD_PARTY
    internal = ("webhook.engine", "webhook.review", "webhook.files")
    assert violations("review", allowed, internal=internal) == []


def test_the_server_imports_no_command_line() -> None:
    """Guards the server from importing the command line or the review."""
    allowed = {"fastapi", "starlette", "uvicorn", "prometheus_client", "pydantic_settings"}
    allowed |= ENGINE_THIRD_PARTY
    internal = ("webhook.engine", "webhook.serving", "webhook.certs", "webhook.files")
    assert violations("serving", allowed, internal=internal) == []


def test_the_fixer_imports_the_standard_library_alone() -> None:
    """Guards `fix-ownership`'s start (it runs in every Dify pod): webhook/fixer.py and
    the console script's launcher import nothing else on that path."""
    for name in ("fixer.py", "launch.py"):
        found = imports(PACKAGE / name)
        outside = {n for n in found if n.split(".")[0] not in sys.stdlib_module_names}
        allowed = {"webhook", "webhook.fixer", "webhook.cli"} if name == "launch.py" else set()
        assert outside <= allowed, (name, outside - allowed)


@pytest.mark.parametrize(
    "line", ["import fastapi", "from webhook.serving import app", "from webhook import cli"]
)
def test_the_check_sees_a_bad_import(
    tmp_path: Path, line: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard can fail: a copy of the engine with one bad import is refused."""
    copy = tmp_path / "webhook"
    (copy / "engine").mkdir(parents=True)
    for path in modules("engine"):
        (copy / "engine" / path.name).write_text(path.read_text())
    target = copy / "engine" / "limits.py"
    target.write_text(target.read_text() + f"\n{line}\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", copy)
    found = violations("engine", ENGINE_THIRD_PARTY, internal=("webhook.engine",))
    assert found, "the bad import went unseen"
    assert all(f.startswith("limits.py: ") for f in found), found
