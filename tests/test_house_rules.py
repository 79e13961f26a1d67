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


def _identifiers(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.lineno, node.name
        elif isinstance(node, ast.arg):
            yield node.lineno, node.arg
        elif isinstance(node, ast.alias):
            yield node.lineno, node.asname or node.name
        elif isinstance(node, ast.keyword) and node.arg:
            yield node.lineno, node.arg


def test_the_flight_code_names_no_bench():
    """The payload finds the bench by entry point (payload/rigs.py) and never names it: no
    identifier of its code is the bench's (`sim`, `bench`); the import contracts keep it from
    importing sim. Its help texts may still tell a user about the bench's options."""
    named = []
    for p in sorted((ROOT / "payload").rglob("*.py")):
        for line, name in _identifiers(ast.parse(p.read_text(encoding="utf-8"))):
            if {"sim", "bench"} & set(name.lower().replace(".", "_").split("_")):
                named.append(f"{p.relative_to(ROOT)}:{line} {name}")
    assert not named, "the bench named in flight code:\n" + "\n".join(named)
