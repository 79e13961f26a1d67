"""The house rules a newcomer relies on (docs/architecture.md): every file of the project can
be read in one sitting and every function on one screen. An argument parser is a list of
options, read by scanning, so it is the one kind of function allowed to be longer."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("stratoecho", "payload", "groundstation", "host_training", "sim")
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80
# Functions that only declare command-line options (argparse), by name.
PARSER_NAMES = ("build_parser", "add_parser", "register_cli")


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _is_parser(name: str) -> bool:
    return name in PARSER_NAMES or (name.startswith("add_") and name.endswith("_arguments"))


def test_no_file_is_longer_than_a_sitting():
    long = [f"{p.relative_to(ROOT)}: {n} lines" for p in _sources()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES]
    assert not long, f"over {MAX_FILE_LINES} lines (cut by job, docs/architecture.md):\n" + "\n".join(long)


def test_no_function_is_longer_than_a_screen():
    long = []
    for p in _sources():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"), str(p))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _is_parser(node.name):
                if (n := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:
                    long.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert not long, f"over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_the_rules_see_a_long_function(tmp_path):
    """The check is not vacuous: a source of 81 statements is caught, a parser is not."""
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    tree = ast.parse(f"def long():\n{body}\n\ndef build_parser():\n{body}\n")
    lengths = {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert lengths == {"long": 81, "build_parser": 81}
    assert not _is_parser("long") and _is_parser("build_parser") and _is_parser("add_key_arguments")
