"""A bounded mutation pass: does the suite notice when the code is wrong?

    .venv/bin/python tests/mutate.py [--per-module N] [--workers N] [--minutes M] [--only MODULE]

For each module below, every mutation site is found in its syntax tree (a
comparison turned round, `and` for `or`, a `not` dropped, an `if` that never
holds, a `raise` or a call statement removed, a number moved by one, `+` for
`-`, a returned value replaced by None); when a module has more than
`--per-module` sites an evenly spaced subset is taken, the same one every run.
Each mutant is written into a private copy of the tree and the module's tests
run against it (`pytest -x`, stopping at the first failure). A mutant is
*killed* when a test fails, *survives* when all pass, *times out* past
`--timeout` seconds (counted as killed: the code no longer finishes). The
report lists the score per module and every survivor as `module:line
operator`, for a person to kill with a test or explain.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE_TESTS = [
    "tests/test_patches.py",
    "tests/test_admission.py",
    "tests/test_golden.py",
    "tests/test_rules.py",
    "tests/test_policy.py",
    "tests/test_security.py",
    "tests/test_storagetype.py",
    "tests/test_resources.py",
    "tests/test_limits.py",
]
# module (relative to the root) -> the tests that guard it
TARGETS: dict[str, list[str]] = {
    "webhook/engine/mutation.py": ENGINE_TESTS,
    "webhook/engine/patches.py": ENGINE_TESTS,
    "webhook/engine/initcontainer.py": ENGINE_TESTS,
    "webhook/engine/admission.py": ENGINE_TESTS,
    "webhook/serving/app.py": [
        "tests/test_admission.py",
        "tests/test_security.py",
        "tests/test_reliability.py",
    ],
    # NB: -k matches module names too: test_fixer whole, test_initscript in program mode
    # (the first pass ran `-k program`, which left out 14 of test_fixer's 16 tests)
    "webhook/fixer.py": [
        "tests/test_fixer.py",
        "tests/test_initscript.py",
        "-k",
        "program or test_fixer",
    ],
}
SWAPS: dict[type, type] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.And: ast.Or,
    ast.Or: ast.And,
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
}


@dataclass(frozen=True)
class Site:
    module: str
    index: int  # the n-th site in the module, in ast.walk order
    line: int
    operator: str


def _is_docstring(node: ast.AST, parent: ast.AST | None) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _kind(node: ast.AST) -> str | None:
    """The mutation this node admits, or None."""
    if isinstance(node, ast.Compare) and type(node.ops[0]) in SWAPS:
        return f"{type(node.ops[0]).__name__}->{SWAPS[type(node.ops[0])].__name__}"
    if isinstance(node, ast.BoolOp):
        return f"{type(node.op).__name__}->{SWAPS[type(node.op)].__name__}"
    if isinstance(node, ast.BinOp) and type(node.op) in SWAPS:
        return f"{type(node.op).__name__}->{SWAPS[type(node.op)].__name__}"
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return "drop-not"
    if isinstance(node, ast.If):
        return "if-never"
    if isinstance(node, ast.Raise):
        return "drop-raise"
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        return "drop-call"
    if (
        isinstance(node, ast.Constant)
        and type(node.value) is int
        and not isinstance(node.value, bool)
    ):
        return "number+1"
    if (
        isinstance(node, ast.Return)
        and node.value is not None
        and not (isinstance(node.value, ast.Constant) and node.value.value is None)
    ):
        return "return-None"
    return None


def _skippable(tree: ast.Module) -> set[int]:
    """Ids of nodes never mutated: docstrings, annotations, module-level constants'
    own numbers stay (they are data), `if TYPE_CHECKING`, `__all__`."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for arg in [*node.args.args, *node.args.kwonlyargs]:
                if arg.annotation is not None:
                    skip.update(id(n) for n in ast.walk(arg.annotation))
            if node.returns is not None:
                skip.update(id(n) for n in ast.walk(node.returns))
        if isinstance(node, ast.AnnAssign):
            skip.update(id(n) for n in ast.walk(node.annotation))
        if _is_docstring(node, None):
            skip.add(id(node))
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    return skip


def sites(module: str) -> list[Site]:
    tree = ast.parse((ROOT / module).read_text())
    skip = _skippable(tree)
    found = []
    for index, node in enumerate(ast.walk(tree)):
        if id(node) in skip:
            continue
        kind = _kind(node)
        if kind is not None:
            found.append(Site(module, index, getattr(node, "lineno", 0), kind))
    return found


def mutant_source(site: Site) -> str:
    tree = ast.parse((ROOT / site.module).read_text())
    node = list(ast.walk(tree))[site.index]
    if isinstance(node, ast.Compare):
        node.ops[0] = SWAPS[type(node.ops[0])]()
    elif isinstance(node, (ast.BoolOp, ast.BinOp)):
        node.op = SWAPS[type(node.op)]()
    elif isinstance(node, ast.UnaryOp):
        _replace(tree, node, node.operand)
    elif isinstance(node, ast.If):
        node.test = ast.Constant(False)
    elif isinstance(node, (ast.Raise, ast.Expr)):
        _replace(tree, node, ast.Pass())
    elif isinstance(node, ast.Constant):
        node.value += 1
    elif isinstance(node, ast.Return):
        node.value = ast.Constant(None)
    return ast.unparse(ast.fix_missing_locations(tree))


def _replace(tree: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, copy.copy(new))
                return
            if isinstance(value, list) and any(v is old for v in value):
                setattr(parent, field, [copy.copy(new) if v is old else v for v in value])
                return


def sample(found: list[Site], limit: int) -> list[Site]:
    if len(found) <= limit:
        return found
    step = len(found) / limit
    return [found[int(i * step)] for i in range(limit)]


def _copy_tree(destination: Path) -> None:
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".pytest_cache")
    shutil.copytree(ROOT, destination, ignore=ignore, symlinks=True)


def run_one(site: Site, workdir: Path, timeout: float) -> str:
    original = (ROOT / site.module).read_text()
    target = workdir / site.module
    target.write_text(mutant_source(site))
    env = {**os.environ, "PYTHONPATH": str(workdir), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        *TARGETS[site.module],
    ]
    try:
        done = subprocess.run(
            command, cwd=workdir, env=env, capture_output=True, timeout=timeout, check=False
        )
        outcome = "survived" if done.returncode == 0 else "killed"
    except subprocess.TimeoutExpired:
        outcome = "timeout"
    finally:
        target.write_text(original)
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-module", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--json", help="write every outcome here")
    parser.add_argument(
        "--survivors-of",
        metavar="JSON",
        help="run only the mutants that survived in this earlier --json (same code)",
    )
    parser.add_argument(
        "--tests",
        nargs="+",
        help="run these tests for every module instead of its own (say, the whole suite"
        " for the survivors of a pass)",
    )
    args = parser.parse_args()
    chosen = [m for m in TARGETS if not args.only or m in args.only]
    plan = [s for m in chosen for s in sample(sites(m), args.per_module)]
    if args.survivors_of:
        rows = json.loads(Path(args.survivors_of).read_text())
        survived = {(r["module"], r["index"]) for r in rows if r["outcome"] == "survived"}
        plan = [s for m in chosen for s in sites(m) if (s.module, s.index) in survived]
    if args.tests:
        for module in TARGETS:
            TARGETS[module] = args.tests
    print(f"{len(plan)} mutants in {len(chosen)} modules", flush=True)
    deadline = time.monotonic() + args.minutes * 60
    scratch = Path(tempfile.mkdtemp(prefix="mutate-"))
    workdirs = []
    for n in range(args.workers):
        _copy_tree(scratch / f"w{n}")
        workdirs.append(scratch / f"w{n}")
    free = list(workdirs)
    outcomes: dict[Site, str] = {}
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        pending: dict[concurrent.futures.Future[str], tuple[Site, Path]] = {}
        queue = list(plan)
        while queue or pending:
            while queue and free and time.monotonic() < deadline:
                site, workdir = queue.pop(0), free.pop()
                pending[pool.submit(run_one, site, workdir, args.timeout)] = (site, workdir)
            if not pending:
                break
            done, _ = concurrent.futures.wait(pending, return_when="FIRST_COMPLETED")
            for future in done:
                site, workdir = pending.pop(future)
                free.append(workdir)
                outcomes[site] = future.result()
                print(f"{outcomes[site]:9} {site.module}:{site.line} {site.operator}", flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    _report(chosen, plan, outcomes)
    if args.json:
        rows = [{**site.__dict__, "outcome": outcome} for site, outcome in outcomes.items()]
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def _report(chosen: list[str], plan: list[Site], outcomes: dict[Site, str]) -> None:
    print("\nmodule | mutants run | killed | survived | score")
    for module in chosen:
        ran = [o for s, o in outcomes.items() if s.module == module]
        killed = sum(o != "survived" for o in ran)
        score = f"{100 * killed / len(ran):.0f}%" if ran else "-"
        print(f"{module} | {len(ran)} | {killed} | {len(ran) - killed} | {score}")
    skipped = len(plan) - len(outcomes)
    if skipped:
        print(f"({skipped} mutants not run: the time ran out)")
    print("\nsurvivors:")
    for site, outcome in sorted(outcomes.items(), key=lambda i: (i[0].module, i[0].line)):
        if outcome == "survived":
            print(f"  {site.module}:{site.line} {site.operator}")


if __name__ == "__main__":
    sys.exit(main())
