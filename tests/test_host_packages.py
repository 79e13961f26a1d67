"""Every make target that runs outside tools installs them on a fresh machine (issue 51, item 1).

Each module a target runs declares a table, program -> the Debian package that has it, and installs
what is missing from it. These tests read the module's source: every external program it runs
(the first word of a list handed to subprocess or to its own `run`) must be in its table or be one
of Debian's Essential/required programs, so a new tool called without its package fails here, not
on a fresh machine halfway through `make pi-check`."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Programs every Debian system has (Essential: yes, or priority required): nothing to install.
ESSENTIAL = {"tar": "tar", "mount": "mount", "umount": "mount", "chroot": "coreutils", "apt-get": "apt",
             "dpkg": "dpkg", "install": "coreutils", "sh": "dash", "bash": "bash"}
# Our own interpreter (sys.executable, a venv's python) and scripts (REPO / ...): never a package to install.
OURS = re.compile(r"sys\.executable|python|REPO")

# module -> where its table is (program -> Debian package); the `make` target that runs it in the comment
MODULES = {
    "sim.bench.run.pi_check": "sim.bench.run.pi_check:HOST_PACKAGES",            # make pi-check
    "host_training.pi_wheel": "host_training.pi_wheel:DEBIAN_PACKAGES",  # make pi-wheel
    "sim.image.build": "sim.image.packages:HOST_PACKAGES",               # make pi-image, each stage
    "sim.image.check": "sim.image.packages:HOST_PACKAGES",
}

CALLS = {"run", "Popen", "check_output", "check_call", "call"}


def _programs(module) -> set[str]:
    """The first word of every argument list the module hands to a runner, resolved in its namespace."""
    tree = ast.parse(Path(module.__file__).read_text())
    # local lists spliced in with `*` (git = ["git", "-C", clone]; run([*git, "fetch"])): their first word
    lists = {t.id: n.value for n in ast.walk(tree) if isinstance(n, ast.Assign) and isinstance(n.value, ast.List)
             for t in n.targets if isinstance(t, ast.Name)}
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name not in CALLS:
            continue
        arg = node.args[0]
        while isinstance(arg, ast.BinOp):  # sudo + [...]
            arg = arg.right
        if isinstance(arg, ast.ListComp):  # [str(c) for c in cmd]: the runner itself
            continue
        if not isinstance(arg, ast.List) or not arg.elts:
            continue
        first = arg.elts[0]
        while isinstance(first, ast.Starred) and isinstance(first.value, ast.Name) and first.value.id in lists:
            first = lists[first.value.id].elts[0]
        source = ast.unparse(first)
        if OURS.search(source):
            continue
        try:
            value = eval(compile(ast.Expression(first), module.__file__, "eval"), vars(module))  # noqa: S307
        except NameError:
            pytest.fail(f"{module.__name__}: cannot tell which program `{source}` runs: name it as a literal "
                        "or a module constant, and its package in the table")
        found.add(Path(str(value)).name)
    return found


@pytest.mark.parametrize("module_name", sorted(MODULES))
def test_every_program_a_target_runs_has_its_package(module_name):
    module = importlib.import_module(module_name)
    where, name = MODULES[module_name].split(":")
    table = getattr(importlib.import_module(where), name)
    programs = _programs(module)
    assert programs, "no program found: the reader of the source is broken"
    missing = sorted(p for p in programs if p not in table and p not in ESSENTIAL)
    assert not missing, (f"{module_name} runs {missing} but {MODULES[module_name]} names no Debian package for "
                         "them: a fresh machine would stop there")


def test_pi_check_installs_arch_test_for_a_foreign_root():
    """mmdebstrap builds an arm64 root on x86-64 only when arch-test says it can run arm64 programs:
    without it a fresh machine stopped at `E: install arch-test for foreign architecture support`."""
    from sim.bench.run.pi_check import HOST_PACKAGES

    assert HOST_PACKAGES["arch-test"] == "arch-test"
    assert HOST_PACKAGES["qemu-aarch64-static"] == "qemu-user-static"  # the interpreter binfmt_misc registers


def test_pi_check_registers_the_interpreter_its_package_ships():
    from sim.bench.run import pi_check

    assert "qemu-user-static" in pi_check.HOST_PACKAGES.values()
    assert str(pi_check.QEMU_CONF) == "/usr/lib/binfmt.d/qemu-aarch64.conf"  # Debian's qemu-user-static has it


def test_make_test_installs_each_program_it_waits_for():
    """`make test` waits for SYSTEM_PACKAGES (files) and installs them with one apt-get line: each file's
    package must be on that line."""
    makefile = (ROOT / "Makefile").read_text()
    files = re.search(r"^SYSTEM_PACKAGES := (.*)$", makefile, re.M).group(1).split()
    line = re.search(r"install -y -q --no-install-recommends \\\n\s*(.*)$", makefile, re.M).group(1).split()
    package_of = {"chromium": "chromium", "chromedriver": "chromium-driver", "mosquitto": "mosquitto"}
    assert sorted(package_of[Path(f).name] for f in files) == sorted(line)


def test_every_apt_get_in_the_makefile_is_a_known_one():
    """The Makefile's own apt-get lines: only make test's; the Pi targets install in their modules."""
    makefile = (ROOT / "Makefile").read_text()
    assert makefile.count("$(APT) install") == 1
