"""An arm64 wheel of llama-cpp-python for the Raspberry Pi, cross-compiled on the workstation.

`make pi-wheel` runs `python -m host_training.pi_wheel --sdist SDIST`: the pinned llama-cpp-python
source distribution the Makefile already downloads (.venv/src/) is compiled with Debian's aarch64
cross toolchain, once per board family, into a wheel a Pi installs with `pip install --no-deps`
instead of compiling for an hour (docs/deploy.md, "A wheel built on your workstation"):

    family  boards                          GGML_CPU_ARM_ARCH        emulated CPU of the check
    a53     Zero 2 W, Pi 3 (Cortex-A53),    armv8-a+crc              cortex-a53
            Pi 4 (Cortex-A72)
    a76     Pi 5 (Cortex-A76)               armv8.2-a+dotprod+fp16   cortex-a76

Two wheels, because the Pi 5's dot-product instructions (SDOT/UDOT, the Q4/Q8 kernels' inner
loop) and half-precision arithmetic do not exist on a Cortex-A53 or A72: a wheel with them dies
with SIGILL on a Zero 2 W, and one without them leaves the Pi 5's fastest kernels unused. The
a53 wheel runs on every 64-bit Pi, the Pi 5 included. Only ggml's CPU backend is compiled per
family (ggml reads GGML_CPU_ARM_ARCH for it alone); the rest is plain armv8-a.

Steps, each logged: install what is missing from Debian's packages (apt-get; as root or with
sudo), a build environment with the pinned build backend from PyPI (build/pi-wheel/venv), then
per family: unpack the sdist, write the CMake toolchain file, `pip wheel` with the cross compilers
(_PYTHON_HOST_PLATFORM tags it linux_aarch64: the wheel is ctypes-based, py3-none), and verify it:
its libraries are ELF aarch64, need only glibc <= 2.36 and the libraries listed, and a small C
program (pi_wheel_smoke.c) loads them under qemu-aarch64-static with the family's CPU model,
prints llama_print_system_info() and checks a Q4_0 matrix product. SOURCE_DATE_EPOCH (the sdist's
own date), -ffile-prefix-map and a CMake build folder of a fixed path, emptied first
(/var/tmp/stratoecho-pi-wheel/FAMILY), make the wheel's bytes independent of when and where it is
built. `--dry-run` prints all of it and does nothing; `--verify-only` checks wheels already built.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMOKE_C = Path(__file__).resolve().parent / "pi_wheel_smoke.c"
DEFAULT_OUT = ROOT / "build" / "pi-wheel"
BUILD_BACKEND = "scikit-build-core==1.1.2"  # what builds the x86-64 wheel of `make install` (its WHEEL file)
HOST_PLATFORM = "linux-aarch64"  # -> wheel tag linux_aarch64, what pip on a 64-bit Pi accepts and builds itself
WHEEL_TAG = "py3-none-linux_aarch64"
SYSROOT = Path("/usr/aarch64-linux-gnu")  # the cross toolchain's arm64 libc, libstdc++, libgomp
CROSS = "aarch64-linux-gnu-"
BOOKWORM_GLIBC = (2, 36)
# Libraries the wheel may need from the Pi: glibc's and GCC's runtime (every Raspberry Pi OS has them;
# libgomp1, llama.cpp's OpenMP threads, comes with build-essential or `apt install libgomp1`).
SYSTEM_LIBS = {"libc.so.6": "libc6", "libm.so.6": "libc6", "ld-linux-aarch64.so.1": "libc6",
               "libstdc++.so.6": "libstdc++6", "libgcc_s.so.1": "libgcc-s1", "libgomp.so.1": "libgomp1"}
# program -> the Debian package that provides it
DEBIAN_PACKAGES = {f"{CROSS}gcc": "gcc-aarch64-linux-gnu", f"{CROSS}g++": "g++-aarch64-linux-gnu",
                   "cmake": "cmake", "ninja": "ninja-build", "qemu-aarch64-static": "qemu-user-static",
                   f"{CROSS}readelf": "binutils-aarch64-linux-gnu"}  # tests/test_host_packages.py holds calls to it
# CMake's build folder: the same absolute path on every machine, because CMake erases the build tree's RPATH
# from libllama-common.so at install and leaves as many padding bytes as that path had (the one thing that made
# two builds in different folders differ). Emptied before each build: a re-configured folder differs too.
BUILD_ROOT = Path("/var/tmp/stratoecho-pi-wheel")
# llama.cpp's pkg-config file names the build's random temporary folder as its prefix: the one file that made two
# builds of the same source differ, and nothing on a Pi reads it (llama-cpp-python finds its libraries itself).
LEFT_OUT = "lib/pkgconfig/llama.pc"
_SDIST = re.compile(r"llama_cpp_python-(\d+(?:\.\d+)*)\.tar\.gz$")


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    arch: str  # GGML_CPU_ARM_ARCH: gcc's -march for ggml's CPU backend
    boards: tuple[str, ...]  # stratoecho.boards' names
    cores: str
    qemu_cpu: str  # the CPU model qemu-aarch64-static emulates for the smoke check


FAMILIES: dict[str, Family] = {
    "a53": Family("a53", "armv8-a+crc", ("pi-zero-2w", "pi3", "pi4"), "Cortex-A53 (Zero 2 W, Pi 3), Cortex-A72 (Pi 4)",
                  "cortex-a53"),
    "a76": Family("a76", "armv8.2-a+dotprod+fp16", ("pi5",), "Cortex-A76 (Pi 5)", "cortex-a76"),
}


class WheelError(RuntimeError):
    """A step failed; the message says which and what to do."""


def log(event: str, **fields) -> None:
    """One progress line on standard error: `HH:MM:SS pi-wheel EVENT key=value ...`."""
    kv = " ".join(f"{k}={v if isinstance(v, (int, float)) else json.dumps(str(v))}" for k, v in fields.items())
    print(f"{time.strftime('%H:%M:%S')} pi-wheel {event} {kv}".rstrip(), file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- what the build uses
def sdist_version(sdist: Path) -> str:
    match = _SDIST.search(sdist.name)
    if not match:
        raise WheelError(f"{sdist} is not a llama-cpp-python source distribution (llama_cpp_python-X.Y.Z.tar.gz)")
    return match.group(1)


def toolchain_text(src: Path, build: Path) -> str:
    """The CMake toolchain file: Linux on aarch64 with Debian's cross compilers; the source and build
    folders mapped to fixed names in what the compiler writes (__FILE__ in ggml's assertions)."""
    prefix_map = f"-ffile-prefix-map={src}=/src/{src.name} -ffile-prefix-map={build}=/build"
    return "\n".join([
        "# Written by host_training/pi_wheel.py: llama-cpp-python for a Raspberry Pi, 64-bit.",
        "set(CMAKE_SYSTEM_NAME Linux)",
        "set(CMAKE_SYSTEM_PROCESSOR aarch64)",
        f"set(CMAKE_C_COMPILER {CROSS}gcc)",
        f"set(CMAKE_CXX_COMPILER {CROSS}g++)",
        f"set(CMAKE_FIND_ROOT_PATH {SYSROOT})",
        "set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)",
        f'set(CMAKE_C_FLAGS_INIT "{prefix_map}")',
        f'set(CMAKE_CXX_FLAGS_INIT "{prefix_map}")',
        "",
    ])


def cmake_args(family: Family, toolchain: Path) -> list[str]:
    """CMAKE_ARGS of one family's build: everything else is llama-cpp-python's default, as on a Pi."""
    return [f"-DCMAKE_TOOLCHAIN_FILE={toolchain}", "-DGGML_NATIVE=OFF", f"-DGGML_CPU_ARM_ARCH={family.arch}"]


def missing_packages() -> list[str]:
    """The Debian packages to install: those whose program is not on PATH (the sysroot comes with gcc)."""
    return sorted({pkg for prog, pkg in DEBIAN_PACKAGES.items() if shutil.which(prog) is None})


def source_epoch(sdist: Path) -> int:
    """SOURCE_DATE_EPOCH: the date of the sdist's own PKG-INFO, so a rebuild of the same pin matches."""
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            if member.name.count("/") == 1 and member.name.endswith("/PKG-INFO"):
                return int(member.mtime)
    raise WheelError(f"{sdist} has no PKG-INFO: not a source distribution")


@dataclasses.dataclass(frozen=True)
class Paths:
    out: Path
    family: Family
    version: str

    @property
    def top(self) -> Path:
        return self.out / self.family.name

    @property
    def src(self) -> Path:
        return self.top / "src" / f"llama_cpp_python-{self.version}"

    @property
    def cmake_build(self) -> Path:
        return BUILD_ROOT / self.family.name

    @property
    def toolchain(self) -> Path:
        return self.top / "aarch64-linux-gnu.cmake"

    @property
    def wheel(self) -> Path:
        return self.top / f"llama_cpp_python-{self.version}-{WHEEL_TAG}.whl"

    @property
    def log(self) -> Path:
        return self.top / "build.log"


# ----------------------------------------------------------------------------- the plan (--dry-run)
def plan_lines(sdist: Path, out: Path, families: list[Family], jobs: int) -> list[str]:
    version = sdist_version(sdist)
    missing = missing_packages()
    found = "" if sdist.is_file() else " (NOT FOUND: `make pi-wheel` downloads it)"
    lines = [f"llama-cpp-python {version} from {sdist}{found}",
             "debian packages: " + (f"would install {' '.join(missing)} (apt-get)" if missing else "all present"),
             f"build environment: {out / 'venv'} with {BUILD_BACKEND} from PyPI",
             f"wheel tag: {WHEEL_TAG} (ctypes libraries, no CPython extension); glibc <= "
             f"{'.'.join(map(str, BOOKWORM_GLIBC))}"]
    for family in families:
        paths = Paths(out, family, version)
        lines += [f"[{family.name}] boards: {', '.join(family.boards)} -- {family.cores}",
                  f"[{family.name}] GGML_CPU_ARM_ARCH={family.arch}",
                  f"[{family.name}] CMAKE_ARGS=\"{' '.join(cmake_args(family, paths.toolchain))}\"",
                  f"[{family.name}] toolchain file {paths.toolchain}:"]
        lines += [f"    {line}" for line in toolchain_text(paths.src, paths.cmake_build).splitlines()]
        lines += [f"[{family.name}] env: _PYTHON_HOST_PLATFORM={HOST_PLATFORM} SOURCE_DATE_EPOCH=<sdist's date> "
                  f"CMAKE_BUILD_PARALLEL_LEVEL={jobs}",
                  f"[{family.name}] pip wheel --no-build-isolation --no-deps -C build-dir={paths.cmake_build} "
                  f"-C wheel.exclude={LEFT_OUT} {paths.src} -> {paths.wheel}",
                  f"[{family.name}] check: ELF aarch64, NEEDED within {sorted(SYSTEM_LIBS)}, then "
                  f"{SMOKE_C.name} under qemu-aarch64-static -cpu {family.qemu_cpu}"]
    return lines


# ----------------------------------------------------------------------------- running things
def run(cmd: list[str], *, env: dict | None = None, log_to: Path | None = None, what: str = "") -> str:
    """Run a command; its output goes to `log_to` (with progress lines from ninja's [n/m]) or is returned."""
    if log_to is None:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise WheelError(f"{what or cmd[0]} failed ({done.returncode}): {(done.stderr or done.stdout)[-2000:]}")
        return done.stdout
    step, started = -1, time.monotonic()
    with open(log_to, "w") as sink, subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                       text=True) as proc:
        for line in proc.stdout:
            sink.write(line)
            if (m := re.match(r"\s*\[(\d+)/(\d+)\]", line)) and (tenth := 10 * int(m.group(1)) // int(m.group(2))) > step:
                step = tenth
                log("compile", what=what, done=f"{m.group(1)}/{m.group(2)}", seconds=round(time.monotonic() - started))
    if proc.returncode != 0:
        tail = log_to.read_text(errors="replace").splitlines()[-25:]
        raise WheelError(f"{what} failed ({proc.returncode}); the end of {log_to}:\n" + "\n".join(tail))
    return ""


def install_packages(packages: list[str]) -> None:
    if not packages:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    log("apt-get install", packages=" ".join(packages), why="cross compilers, cmake, ninja, qemu for the check")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(sudo + ["apt-get", "update", "-q"], env=env, what="apt-get update")
    run(sudo + ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], env=env, what="apt-get install")
    if still := missing_packages():
        raise WheelError(f"still missing after apt-get install: {' '.join(still)}")


def build_env(out: Path) -> Path:
    """A virtual environment holding the pinned build backend (pip wheel runs without isolation in it,
    so _PYTHON_HOST_PLATFORM only tags the wheel and never steers what pip installs)."""
    venv = out / "venv"
    python = venv / "bin" / "python"
    stamp = venv / ".backend"
    if stamp.is_file() and stamp.read_text() == BUILD_BACKEND:
        return python
    log("build environment", venv=venv, backend=BUILD_BACKEND)
    run([sys.executable, "-m", "venv", "--clear", str(venv)], what="python -m venv")
    run([str(python), "-m", "pip", "install", "--quiet", BUILD_BACKEND], what=f"pip install {BUILD_BACKEND}")
    stamp.write_text(BUILD_BACKEND)
    return python


def unpack(sdist: Path, paths: Paths) -> None:
    """A fresh source tree per family (llama-cpp-python's CMake also installs into its own tree)."""
    shutil.rmtree(paths.src.parent, ignore_errors=True)
    paths.src.parent.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(paths.src.parent, filter="tar")
    if not (paths.src / "CMakeLists.txt").is_file():
        raise WheelError(f"{sdist} did not unpack into {paths.src}")


def build_wheel(python: Path, sdist: Path, paths: Paths, jobs: int) -> Path:
    unpack(sdist, paths)
    shutil.rmtree(paths.cmake_build, ignore_errors=True)
    paths.cmake_build.mkdir(parents=True)
    paths.toolchain.write_text(toolchain_text(paths.src.resolve(), paths.cmake_build.resolve()))
    args = cmake_args(paths.family, paths.toolchain.resolve())
    env = {**os.environ, "CMAKE_ARGS": " ".join(args), "_PYTHON_HOST_PLATFORM": HOST_PLATFORM,
           "SOURCE_DATE_EPOCH": str(source_epoch(sdist)), "CMAKE_BUILD_PARALLEL_LEVEL": str(jobs)}
    for stale in paths.top.glob("*.whl"):
        stale.unlink()
    log("build", family=paths.family.name, cmake_args=env["CMAKE_ARGS"], log=paths.log)
    run([str(python), "-m", "pip", "wheel", "-v", "--no-build-isolation", "--no-deps", "--no-cache-dir",
         "-C", f"build-dir={paths.cmake_build.resolve()}", "-C", f"wheel.exclude={LEFT_OUT}",
         "-w", str(paths.top), str(paths.src)],
        env=env, log_to=paths.log, what=f"pip wheel ({paths.family.name})")
    if not paths.wheel.is_file():
        raise WheelError(f"no {paths.wheel.name} in {paths.top}: see {paths.log}")
    return paths.wheel


# ----------------------------------------------------------------------------- checking the wheel
def elf_machine(path: Path) -> str:
    """The ELF header's machine (bytes 18-19, little-endian): AArch64 is 183."""
    head = path.read_bytes()[:20]
    if head[:4] != b"\x7fELF":
        return "not ELF"
    machine = int.from_bytes(head[18:20], "little")
    return {183: "aarch64", 62: "x86-64", 40: "arm"}.get(machine, f"machine {machine}")


def needed_and_glibc(path: Path) -> tuple[list[str], tuple[int, ...]]:
    """A library's NEEDED entries, and the newest GLIBC_x.y symbol version it asks for."""
    dynamic = run([f"{CROSS}readelf", "-d", str(path)], what="readelf -d")
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)
    versions = run([f"{CROSS}readelf", "-V", str(path)], what="readelf -V")
    glibc = max((tuple(int(x) for x in v.split(".")) for v in re.findall(r"GLIBC_(\d+(?:\.\d+)+)", versions)),
                default=(0,))
    return needed, glibc


def check_wheel(wheel: Path, unpacked: Path) -> dict:
    """Unzip the wheel and check its tag and every shared library in it; returns what was found."""
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(unpacked)
        tags = re.findall(r"^Tag: (\S+)$", zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/WHEEL")))
                          .decode(), re.M)
    if tags != [WHEEL_TAG]:
        raise WheelError(f"{wheel.name} is tagged {tags}, not {WHEEL_TAG}")
    libs = sorted(p for p in unpacked.rglob("*.so*") if p.is_file() and not p.is_symlink())
    if not any(p.name.startswith("libllama.so") for p in libs):
        raise WheelError(f"{wheel.name} holds no libllama.so")
    own = {p.name for p in libs}
    needed_all, newest = set(), (0,)
    for lib in libs:
        if (machine := elf_machine(lib)) != "aarch64":
            raise WheelError(f"{lib.relative_to(unpacked)} is {machine}, not aarch64")
        needed, glibc = needed_and_glibc(lib)
        needed_all.update(n for n in needed if n not in own)
        newest = max(newest, glibc)
    if unknown := sorted(needed_all - set(SYSTEM_LIBS)):
        raise WheelError(f"{wheel.name} needs {unknown}, not among the libraries a Pi is known to have")
    if newest > BOOKWORM_GLIBC:
        raise WheelError(f"{wheel.name} needs glibc {'.'.join(map(str, newest))}, Bookworm has 2.36")
    log("checked", wheel=wheel.name, libraries=len(libs), elf="aarch64", needed=" ".join(sorted(needed_all)),
        glibc=".".join(map(str, newest)))
    return {"libraries": len(libs), "needed": sorted(needed_all), "glibc": ".".join(map(str, newest)),
            "debian_packages": sorted({SYSTEM_LIBS[n] for n in needed_all})}


def pip_accepts(wheel: Path) -> str:
    """What pip answers for this wheel on a 64-bit Pi with Raspberry Pi OS Bookworm's Python 3.11 (pip's own
    tag matching, as `pip install` on the Pi will do it; nothing is installed)."""
    with tempfile.TemporaryDirectory(prefix="pi-wheel-pip-") as target:
        out = run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index", "--only-binary=:all:",
                   "--platform", "linux_aarch64", "--python-version", "3.11", "--implementation", "cp",
                   "--target", target, str(wheel)], what="pip install --dry-run --platform linux_aarch64")
    if not (answer := re.search(r"^Would install .*$", out, re.M)):
        raise WheelError(f"pip for a Pi does not take {wheel.name}: {out[-500:]}")
    return answer.group(0)


def smoke(unpacked: Path, paths: Paths, qemu_cpu: str) -> tuple[int, str]:
    """Compile pi_wheel_smoke.c against the wheel's libraries and run it under qemu-aarch64-static with
    `qemu_cpu`; returns its exit status (negative: the signal) and output."""
    libdir = next(p.parent for p in unpacked.rglob("libllama.so*") if p.parent.name == "lib" and
                  p.parent.parent.name == "llama_cpp")
    program = paths.top / "smoke"
    include = unpacked / "include"  # the wheel's own ggml.h and ggml-cpu.h
    run([f"{CROSS}gcc", "-O1", "-o", str(program), str(SMOKE_C), f"-I{include}", f"-L{libdir}",
         "-lllama", "-lggml", "-lggml-base", "-lggml-cpu", "-lm"], what=f"{CROSS}gcc {SMOKE_C.name}")
    env = {**os.environ, "LD_LIBRARY_PATH": str(libdir.resolve()), "QEMU_CPU": qemu_cpu}
    done = subprocess.run(["qemu-aarch64-static", "-L", str(SYSROOT), str(program)], env=env,
                          capture_output=True, text=True, timeout=600)
    return done.returncode, (done.stdout + done.stderr).strip()


def verify(wheel: Path, paths: Paths) -> dict:
    """The wheel's checks, and the smoke run under the family's CPU (must pass) and, for a family above
    the baseline, under a Cortex-A53 (expected to die: shows the flags reach the code)."""
    with tempfile.TemporaryDirectory(prefix="pi-wheel-") as tmp:
        unpacked = Path(tmp)
        found = check_wheel(wheel, unpacked)
        found["pip_on_pi"] = pip_accepts(wheel)
        log("pip", python="cp311", platform="linux_aarch64", answer=found["pip_on_pi"])
        status, output = smoke(unpacked, paths, paths.family.qemu_cpu)
        log("smoke", family=paths.family.name, cpu=paths.family.qemu_cpu, status=status)
        print(f"[{paths.family.name}] qemu-aarch64-static -cpu {paths.family.qemu_cpu}:\n" +
              "\n".join(f"    {line}" for line in output.splitlines()), flush=True)
        if status != 0:
            raise WheelError(f"the smoke check of {wheel.name} under -cpu {paths.family.qemu_cpu} failed "
                             f"(status {status}):\n{output}")
        found["smoke"] = output
        if paths.family.qemu_cpu != "cortex-a53":
            status, output = smoke(unpacked, paths, "cortex-a53")
            found["on_cortex_a53"] = f"status {status}" + (" (SIGILL)" if status == -4 else "")
            print(f"[{paths.family.name}] the same under -cpu cortex-a53 (a Zero 2 W's core): {found['on_cortex_a53']}",
                  flush=True)
    return found


def describe(wheel: Path, family: Family, seconds: float | None, found: dict) -> dict:
    data = wheel.read_bytes()
    return {"family": family.name, "boards": list(family.boards), "cores": family.cores,
            "wheel": str(wheel), "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "GGML_CPU_ARM_ARCH": family.arch, "seconds": None if seconds is None else round(seconds), **found}


# ----------------------------------------------------------------------------- the command
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m host_training.pi_wheel",
        description="Cross-compile llama-cpp-python into arm64 wheels for the Raspberry Pi (Debian's aarch64 "
                    "toolchain), check them under qemu-aarch64-static, print their path, size and sha256. "
                    "docs/deploy.md, 'A wheel built on your workstation'.")
    parser.add_argument("--sdist", type=Path, required=True,
                        help="llama-cpp-python's source distribution (make pi-wheel passes .venv/src/llama_cpp_python-"
                             "VERSION.tar.gz, the pinned version)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default build/pi-wheel)")
    parser.add_argument("--family", action="append", choices=sorted(FAMILIES),
                        help="board family to build, repeatable (default: all): "
                             + "; ".join(f"{f.name} = {f.cores}, -march={f.arch}" for f in FAMILIES.values()))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="parallel compile jobs (default: all cores)")
    parser.add_argument("--no-install", action="store_true", help="never run apt-get: fail if a package is missing")
    parser.add_argument("--verify-only", action="store_true", help="build nothing: check the wheels already in --out "
                                                                   "(tag, ELF, libraries, the smoke run under qemu)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (packages, flags, toolchain file, "
                                                               "commands) and do nothing")
    return parser


def build_all(args: argparse.Namespace, families: list[Family]) -> list[dict]:
    missing = missing_packages()
    if missing and args.no_install:
        raise WheelError(f"missing Debian packages: {' '.join(missing)} (apt-get install them, or drop --no-install)")
    install_packages(missing)
    args.out.mkdir(parents=True, exist_ok=True)
    python = None if args.verify_only else build_env(args.out)
    results = []
    for family in families:
        started = time.monotonic()
        paths = Paths(args.out, family, sdist_version(args.sdist))
        if args.verify_only and not paths.wheel.is_file():
            raise WheelError(f"--verify-only: no {paths.wheel}")
        wheel = paths.wheel if args.verify_only else build_wheel(python, args.sdist, paths, args.jobs)
        found = verify(wheel, paths)
        seconds = None if args.verify_only else time.monotonic() - started  # a check keeps the build's time
        results.append(describe(wheel, family, seconds, found))
        log("done", family=family.name, seconds=round(time.monotonic() - started))
    return results


def report(results: list[dict], out: Path, seconds: float, verb: str = "built") -> None:
    """Print the figures; summary.json and SHA256SUMS keep every family's latest (a run of one keeps the other's)."""
    summary = out / "summary.json"
    kept = {r["family"]: r for r in (json.loads(summary.read_text()) if summary.is_file() else [])}
    for r in results:
        if r["seconds"] is None and r["family"] in kept:
            r["seconds"] = kept[r["family"]]["seconds"]
        kept[r["family"]] = r
    every = [kept[name] for name in sorted(kept)]
    summary.write_text(json.dumps(every, indent=2) + "\n")
    (out / "SHA256SUMS").write_text("".join(f"{r['sha256']}  {Path(r['wheel']).relative_to(out)}\n" for r in every))
    print(f"\narm64 wheels of llama-cpp-python ({WHEEL_TAG}), {verb} in {seconds / 60:.1f} min:")
    for r in results:
        print(f"  {r['wheel']}\n    for {', '.join(r['boards'])} ({r['cores']})\n"
              f"    GGML_NATIVE=OFF GGML_CPU_ARM_ARCH={r['GGML_CPU_ARM_ARCH']}; built in {(r['seconds'] or 0) / 60:.1f} min\n"
              f"    {r['size_bytes']:,} bytes ({r['size_bytes'] / 2**20:.1f} MiB), sha256 {r['sha256']}\n"
              f"    needs {', '.join(r['needed'])} (Debian: {', '.join(r['debian_packages'])}), glibc >= {r['glibc']}")
    print(f"  sha256 sums in {out / 'SHA256SUMS'}, figures in {out / 'summary.json'}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.out, args.sdist = args.out.resolve(), args.sdist.resolve()
    families = [FAMILIES[name] for name in dict.fromkeys(args.family or FAMILIES)]
    try:
        if args.dry_run:
            print("\n".join(plan_lines(args.sdist, args.out, families, args.jobs)))
            print("dry run: nothing done")
            return 0
        if not args.sdist.is_file():
            raise WheelError(f"{args.sdist} not found: `make pi-wheel` downloads it")
        started = time.monotonic()
        results = build_all(args, families)
        report(results, args.out, time.monotonic() - started, "checked" if args.verify_only else "built")
    except WheelError as exc:
        log("failed", error=str(exc).splitlines()[0])
        print(f"pi-wheel: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
