"""The rooms hold: what each package of `webhook` may import.

Guards the boundaries the folders show (see webhook/__init__.py), bottom up:
`k8s` (Kubernetes names, image references, the YAML writer) needs nothing but
the standard library; the engine stays pure (the standard library, `k8s`, and
the libraries it must have: pydantic for the policy model, PyYAML to read the
policy, orjson for the status annotation and the envelope, pybase64 for the
patch); `files` reads what users give; `certs` keeps certificates on disk;
the dry run (`review`), the server (`serving`) and the install objects
(`install`) never import one another; nothing imports the command line, and
`fix-ownership` (it runs in every Dify pod) imports the standard library
alone. Imports inside functions count too.
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


def modules(room: str) -> list[Path]:
    """The modules of a package, or the one module `room.py`."""
    single = PACKAGE / f"{room}.py"
    return [single] if single.exists() else sorted((PACKAGE / room).glob("*.py"))


WEB = {"fastapi", "starlette", "uvicorn", "prometheus_client", "pydantic_settings"}
# room -> (third-party libraries it may import, `webhook` modules it may import)
ROOMS: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "k8s": (set(), ("webhook.k8s",)),
    "engine": (ENGINE_THIRD_PARTY, ("webhook.engine", "webhook.k8s")),
    "files": (ENGINE_THIRD_PARTY, ("webhook.files", "webhook.engine")),
    "certs": ({"cryptography"}, ("webhook.certs", "webhook.files", "webhook.engine")),
    "review": (
        ENGINE_THIRD_PARTY,
        ("webhook.review", "webhook.engine", "webhook.k8s", "webhook.files"),
    ),
    "serving": (
        ENGINE_THIRD_PARTY | WEB | {"cryptography"},
        ("webhook.serving", "webhook.engine", "webhook.k8s", "webhook.certs", "webhook.files"),
    ),
    "install": (
        ENGINE_THIRD_PARTY,
        ("webhook.install", "webhook.engine", "webhook.k8s", "webhook.certs"),
    ),
}


def violations(room: str) -> list[str]:
    """Imports of `room`'s modules that are neither stdlib nor allowed to it."""
    allowed, internal = ROOMS[room]
    bad = []
    for path in modules(room):
        for name in sorted(imports(path)):
            top = name.split(".")[0]
            if top == "webhook":
                if name != "webhook" and not name.startswith(internal):
                    bad.append(f"{path.name}: {name}")
            elif top not in sys.stdlib_module_names and top not in allowed:
                bad.append(f"{path.name}: {name}")
    return bad


@pytest.mark.parametrize("room", ROOMS)
def test_each_room_imports_only_what_it_may(room: str) -> None:
    """Guards every boundary in the table above."""
    assert violations(room) == []


def test_every_module_is_in_a_room() -> None:
    """Guards the table from going stale: a new package or module is placed in it."""
    placed = {p for room in ROOMS for p in modules(room)}
    placed |= {PACKAGE / n for n in ("__init__.py", "__main__.py", "fixer.py", "launch.py")}
    placed |= set(modules("cli"))  # the command line may import every room
    assert set(PACKAGE.rglob("*.py")) - placed == set()


def test_the_fixer_imports_the_standard_library_alone() -> None:
    """Guards `fix-ownership`'s start (it runs in every Dify pod): webhook/fixer.py and
    the console script's launcher import nothing else on that path."""
    for name in ("fixer.py", "launch.py"):
        found = imports(PACKAGE / name)
        outside = {n for n in found if n.split(".")[0] not in sys.stdlib_module_names}
        allowed = {"webhook", "webhook.fixer", "webhook.cli"} if name == "launch.py" else set()
        assert outside <= allowed, (name, outside - allowed)


BAD_IMPORTS = {
    "k8s": "from webhook.engine import policy",
    "engine": "from webhook.serving import app",
    "files": "from webhook.certs import pki",
    "certs": "from webhook.serving import settings",
    "review": "from webhook.serving import app",
    "serving": "from webhook.review import audit",
    "install": "from webhook.serving.settings import Settings",
}


@pytest.mark.parametrize("room", ROOMS)
@pytest.mark.parametrize("line", ["import fastapi", "from webhook import cli", "BAD"])
def test_the_check_sees_a_bad_import(
    tmp_path: Path, room: str, line: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard can fail: a copy of the room with one bad import is refused, and
    the finding names the module it is in."""
    if line == "BAD":
        line = BAD_IMPORTS[room]
    if line == "import fastapi" and room == "serving":
        line = "import requests"
    copy = tmp_path / "webhook"
    originals = modules(room)
    target_dir = copy / room if originals[0].parent != PACKAGE else copy
    target_dir.mkdir(parents=True)
    for path in originals:
        (target_dir / path.name).write_text(path.read_text())
    target = target_dir / originals[-1].name
    target.write_text(target.read_text() + f"\n{line}\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", copy)
    found = violations(room)
    assert found, "the bad import went unseen"
    assert all(f.startswith(f"{target.name}: ") for f in found), found


MAX_FUNCTION_LINES = 60
MAX_CLI_MODULE_LINES = 350


def test_every_function_fits_in_a_head() -> None:
    """Guards the size of functions in webhook/ (a literal that is data belongs in a
    data file, as the Deployment is in webhook/install/deployment.yaml) and of the
    command line's modules."""
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {size}")
    assert long == []
    for path in modules("cli"):
        assert len(path.read_text().splitlines()) < MAX_CLI_MODULE_LINES, path
