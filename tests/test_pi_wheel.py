"""`make pi-wheel` (host_training/pi_wheel.py) without compiling anything: the Makefile's target,
the flags and boards of each wheel against docs/deploy.md's table, the CMake toolchain file, the
checks a built wheel must pass, and the dry run, which plans and touches nothing."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from host_training import pi_wheel

ROOT = Path(__file__).resolve().parent.parent
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")
DEPLOY = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")


def _pinned_version() -> str:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    return re.search(r'"llama-cpp-python==([0-9.]+)"', pyproject).group(1)


def _section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("\n## ", start)
    return text[start:] if end < 0 else text[start:end]


def _doc_rows() -> dict[str, list[str]]:
    """docs/deploy.md's wheel table: family -> its cells (rows naming build/pi-wheel/<family>/)."""
    rows = {}
    for line in _section(DEPLOY, "### A wheel built on your workstation").splitlines():
        if line.startswith("|") and (m := re.search(r"build/pi-wheel/(\w+)/", line)):
            rows[m.group(1)] = [cell.strip() for cell in line.strip("|").split("|")]
    return rows


def test_the_makefile_has_the_target_outside_make_test():
    assert re.search(r"^pi-wheel: \$\(LLAMA_SDIST\)", MAKEFILE, re.M), "no pi-wheel target on the pinned sdist"
    assert "pi-wheel" in re.search(r"^\.PHONY:(.*)$", MAKEFILE, re.M).group(1)
    recipe = re.search(r"^pi-wheel:.*\n\t(.*)$", MAKEFILE, re.M).group(1)
    assert "-m host_training.pi_wheel" in recipe and "--sdist $(LLAMA_SDIST)" in recipe
    assert re.search(r'@echo "make pi-wheel .*min', MAKEFILE), "make help says what pi-wheel does and how long"
    test_prereqs = re.search(r"^test:(.*)$", MAKEFILE, re.M).group(1)
    assert "pi-wheel" not in test_prereqs


def test_docs_give_each_wheel_its_flags_and_boards():
    rows = _doc_rows()
    assert set(rows) == set(pi_wheel.FAMILIES), f"docs/deploy.md's table names {sorted(rows)}"
    for name, family in pi_wheel.FAMILIES.items():
        row = " | ".join(rows[name])
        assert f"`{family.arch}`" in row, f"{name}: docs do not say GGML_CPU_ARM_ARCH={family.arch}"
        for board in family.boards:
            assert f"`{board}`" in row, f"{name}: docs do not name {board}"
        assert f"llama_cpp_python-{_pinned_version()}-{pi_wheel.WHEEL_TAG}.whl" in row, "not the pinned version"
        assert re.search(r"`[0-9a-f]{64}`", row), f"{name}: no sha256 in the docs"


def test_every_board_has_exactly_one_wheel():
    boards = [b for family in pi_wheel.FAMILIES.values() for b in family.boards]
    assert sorted(boards) == sorted(["pi-zero-2w", "pi3", "pi4", "pi5"])
    assert pi_wheel.FAMILIES["a53"].arch.startswith("armv8-a"), "the baseline must run on a Cortex-A53"
    assert "dotprod" not in pi_wheel.FAMILIES["a53"].arch and "dotprod" in pi_wheel.FAMILIES["a76"].arch


def test_the_toolchain_file_and_cmake_args(tmp_path):
    text = pi_wheel.toolchain_text(tmp_path / "src", tmp_path / "cmake")
    for line in ("set(CMAKE_SYSTEM_NAME Linux)", "set(CMAKE_SYSTEM_PROCESSOR aarch64)",
                 "set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)", "set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)"):
        assert line in text.splitlines()
    assert f"-ffile-prefix-map={tmp_path / 'src'}=/src/src" in text, "build paths stay out of the binaries"
    args = pi_wheel.cmake_args(pi_wheel.FAMILIES["a76"], tmp_path / "t.cmake")
    assert args == [f"-DCMAKE_TOOLCHAIN_FILE={tmp_path / 't.cmake'}", "-DGGML_NATIVE=OFF",
                    "-DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod+fp16"]


def test_ggml_reads_the_variable_the_script_sets():
    """GGML_CPU_ARM_ARCH is ggml's, in the pinned llama.cpp: checked in the sdist when it is there."""
    sdist = ROOT / ".venv" / "src" / f"llama_cpp_python-{_pinned_version()}.tar.gz"
    if not sdist.is_file():
        pytest.skip(f"{sdist} not downloaded")
    import tarfile

    with tarfile.open(sdist) as tar:
        name = next(n for n in tar.getnames() if n.endswith("vendor/llama.cpp/ggml/src/ggml-cpu/CMakeLists.txt"))
        cmake = tar.extractfile(name).read().decode()
    assert "-march=${GGML_CPU_ARM_ARCH}" in cmake


def test_the_dry_run_plans_and_touches_nothing(tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise AssertionError(f"the dry run ran {args[0]}")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    out = tmp_path / "out"
    sdist = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    assert pi_wheel.main(["--sdist", str(sdist), "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert not out.exists()
    assert "NOT FOUND" in printed and printed.rstrip().endswith("dry run: nothing done")
    for family in pi_wheel.FAMILIES.values():
        assert f"[{family.name}] GGML_CPU_ARM_ARCH={family.arch}" in printed
        assert f"-cpu {family.qemu_cpu}" in printed
    assert "set(CMAKE_SYSTEM_PROCESSOR aarch64)" in printed and "-DGGML_NATIVE=OFF" in printed
    assert "debian packages:" in printed


def test_one_family_and_help():
    done = subprocess.run([sys.executable, "-m", "host_training.pi_wheel", "--help"], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0 and "--dry-run" in done.stdout and "--family" in done.stdout
    done = subprocess.run([sys.executable, "-m", "host_training.pi_wheel", "--sdist", "x/llama_cpp_python-1.2.3.tar.gz",
                           "--family", "a53", "--dry-run"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and "[a53]" in done.stdout and "[a76]" not in done.stdout
    assert "llama-cpp-python 1.2.3" in done.stdout


def test_a_wheel_for_another_platform_is_refused(tmp_path):
    wheel = tmp_path / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("llama_cpp_python-0.3.36.dist-info/WHEEL", "Wheel-Version: 1.0\nTag: py3-none-linux_x86_64\n")
    with pytest.raises(pi_wheel.WheelError, match="linux_x86_64"):
        pi_wheel.check_wheel(wheel, tmp_path / "unpacked")


def test_the_elf_machine_is_read_from_the_header(tmp_path):
    lib = tmp_path / "lib.so"
    lib.write_bytes(b"\x7fELF" + bytes(14) + (183).to_bytes(2, "little") + bytes(40))
    assert pi_wheel.elf_machine(lib) == "aarch64"
    lib.write_bytes(b"\x7fELF" + bytes(14) + (62).to_bytes(2, "little") + bytes(40))
    assert pi_wheel.elf_machine(lib) == "x86-64"
    lib.write_bytes(b"#!/bin/sh\n" + bytes(20))
    assert pi_wheel.elf_machine(lib) == "not ELF"
