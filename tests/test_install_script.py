"""deploy/install-pi.sh, the install of docs/deploy.md as one script, against the repository.

Its dry run (`--dry-run --root TMP`, as any user, touching nothing) prints every command it
would run, each on a line `   $ CMD` quoted for the shell. These tests read that plan and hold
it to what ships: the unit files it copies are the payload's units in systemd/ that deploy.md
installs, the paths in the unit's ExecStart= (the venv's python, the configuration) and the
data partition it requires are the ones the script makes, the unit runs as the user and groups
the script creates, and the watchdog, the fstab line, the packages and the journal settings are
deploy.md's own. Then it installs for real into a throwaway root the steps that need no Pi
(data mount line, user, project, configuration, persona, key, watchdog, unit), twice: the
second run has nothing to change.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from stratoecho.wire.uplink_keys import write_key_file
from tests.test_systemd_units import parse_unit, values

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "install-pi.sh"
DEPLOY_MD = ROOT / "docs" / "deploy.md"
UNITS = ROOT / "systemd"
PI_CONFIG = ROOT / "config" / "payload.pi.toml"
PAYLOAD_UNIT = "stratoecho-payload.service"

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="no bash here: the script is a bash script")


def _install(*args: str, check: bool = True, umask: str | None = None) -> subprocess.CompletedProcess:
    """The script with `args`; under `umask` (octal, as the shell takes it) where given."""
    env = {**os.environ, "LC_ALL": "C"}
    command = ["bash", str(SCRIPT), *args]
    if umask is not None:
        command = ["bash", "-c", f'umask {umask} && exec bash "$0" "$@"', *command[1:]]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert result.returncode == 0, f"install-pi.sh {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _llama_pin() -> str:
    return re.search(r'"llama-cpp-python==([0-9.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)


def _inputs(base: Path) -> list[str]:
    """A flight key, a persona bundle and a wheel to give the script: its options for them."""
    key = base / "uplink.key"
    write_key_file(key)  # as keygen writes it
    persona = base / "persona"
    persona.mkdir()
    (persona / "persona.toml").write_text('name = "test"\n')
    wheel = base / f"llama_cpp_python-{_llama_pin()}-cp311-cp311-linux_aarch64.whl"
    wheel.write_bytes(b"not really a wheel")
    return ["--key", str(key), "--persona", str(persona), "--wheel", str(wheel)]


def _commands(out: str, root: Path) -> list[list[str]]:
    """The plan's commands, with the --root prefix taken off their paths (as on the Pi)."""
    prefix = str(root)
    commands = []
    for line in out.splitlines():
        if not line.startswith("   $ "):
            continue
        words = shlex.split(line[5:])
        words = [w.replace(prefix, "", 1) if w.startswith(prefix + "/") else w for w in words]
        words = ["--root=/" if w == f"--root={prefix}" else w for w in words]
        commands.append(words[2:] if words[:2] == ["chroot", prefix] else words)
    return commands


@pytest.fixture(scope="module")
def plan(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("install")
    root = base / "root"
    root.mkdir()
    out = _install("--dry-run", "--root", str(root), "--read-only-root", *_inputs(base)).stdout
    return {"out": out, "commands": _commands(out, root), "root": root}


def _payload_unit() -> dict:
    return parse_unit((UNITS / PAYLOAD_UNIT).read_text())


def _one(unit: dict, section: str, key: str) -> str:
    (value,) = values(unit, section, key)
    return value


def _installed(commands: list[list[str]]) -> dict[str, tuple[str, str]]:
    """`install -m MODE SRC DEST` in the plan: DEST -> (SRC, MODE)."""
    return {c[-1]: (c[-2], c[2]) for c in commands if c[0] == "install" and c[1] == "-m"}


def _written(commands: list[list[str]], dest: str, redirect: str = ">") -> list[str]:
    """The lines `printf '%s\\n' LINE... > DEST` writes."""
    for c in commands:
        if c[0] == "printf" and c[-2:] == [redirect, dest]:
            return c[2:-2]
    raise AssertionError(f"the plan writes nothing to {dest}")


def _the(commands: list[list[str]], *start: str) -> list[str]:
    found = [c for c in commands if c[:len(start)] == list(start)]
    assert len(found) == 1, f"expected one `{' '.join(start)} ...` in the plan, found {found}"
    return found[0]


def _section(number: int) -> str:
    text = DEPLOY_MD.read_text()
    start = text.index(f"\n## {number}. ")
    return text[start:text.index("\n## ", start + 1)]


def _doc_command(section: str, first_words: str) -> str:
    """A command of a deploy.md section's code blocks, its continuation lines joined."""
    match = re.search(re.escape(first_words) + r"(?:[^\n]*\\\n)*[^\n]*", section)
    assert match, f"deploy.md no longer says `{first_words} ...`"
    return match.group(0).replace("\\\n", " ")


def _doc_printf(section: str, dest: str) -> list[str]:
    """The lines of `printf '...' | sudo tee DEST` in a deploy.md section."""
    match = re.search(r"printf '([^']*)' \| sudo tee " + re.escape(dest), section)
    assert match, f"deploy.md no longer writes {dest} with printf"
    return match.group(1).split("\\n")[:-1]


# --------------------------------------------------------------------------- the plan against the units


@needs_bash
def test_the_units_it_copies_are_the_payload_units_deploy_md_installs(plan):
    installed = _installed(plan["commands"])
    copied = {Path(dest).name: src for dest, (src, _) in installed.items() if dest.startswith("/etc/systemd/system/")}
    for name, src in copied.items():
        assert (UNITS / name).is_file(), f"the script copies {name}, which systemd/ does not have"
        assert src == f"/opt/stratoecho/systemd/{name}" and installed[f"/etc/systemd/system/{name}"][1] == "644"
    documented = set(re.findall(r"cp /opt/stratoecho/systemd/(\S+) /etc/systemd/system/", _section(8)))
    payload_units = {p.name for p in UNITS.glob("*.service") if "-m payload " in p.read_text()}
    assert set(copied) == documented == payload_units == {PAYLOAD_UNIT}
    for name in copied:
        assert _the(plan["commands"], "systemctl", "--root=/", "enable")[-1] == name


@needs_bash
def test_the_units_exec_start_runs_what_the_script_installs(plan):
    unit, commands = _payload_unit(), plan["commands"]
    venv = _the(commands, "python3", "-m", "venv")
    assert venv[3] == "--system-site-packages", "picamera2 and lgpio come from apt (deploy.md step 5)"
    clone = _the(commands, "git", "clone")
    exec_start = shlex.split(_one(unit, "Service", "ExecStart"))
    assert exec_start[0] == f"{venv[-1]}/bin/python" and venv[-1] == f"{clone[-1]}/.venv"
    assert _one(unit, "Service", "WorkingDirectory") == clone[-1]
    assert exec_start[1:5] == ["-m", "payload", "run", "--config"]
    config = exec_start[5]
    assert _installed(commands)[config] == (f"{clone[-1]}/config/payload.pi.toml", "644")
    (payload_install,) = [c for c in commands if c[:1] == [f"{venv[-1]}/bin/pip"] and "-e" in c]
    assert payload_install[-1] == f"{clone[-1]}[payload]"


@needs_bash
def test_the_data_partition_the_unit_needs_is_the_one_the_script_mounts(plan):
    unit, commands = _payload_unit(), plan["commands"]
    data_dir = _one(unit, "Unit", "RequiresMountsFor")
    assert values(unit, "Service", "ReadWritePaths") == [data_dir]
    assert tomllib.loads(PI_CONFIG.read_text())["data_dir"] == data_dir
    assert ["mkdir", "-p", data_dir] in commands
    (fstab_line,) = _written(commands, "/etc/fstab", ">>")
    assert fstab_line.split()[:3] == ["LABEL=stratodata", data_dir, "ext4"]
    doc_line = re.search(r"echo '([^']*)'", _section(2)).group(1)
    assert fstab_line == doc_line, "the fstab line is deploy.md step 2's"
    assert ["chmod", "750", data_dir] in commands


@needs_bash
def test_the_unit_runs_as_the_user_and_groups_the_script_creates(plan):
    unit, commands = _payload_unit(), plan["commands"]
    useradd = _the(commands, "useradd")
    user = useradd[-1]
    assert _one(unit, "Service", "User") == _one(unit, "Service", "Group") == user
    data_dir = _one(unit, "Unit", "RequiresMountsFor")
    assert {"--system", "--user-group", "--no-create-home"} <= set(useradd)
    assert useradd[useradd.index("--home-dir") + 1] == data_dir
    assert useradd[useradd.index("--shell") + 1] == "/usr/sbin/nologin"
    usermod = _the(commands, "usermod")
    groups = usermod[usermod.index("-aG") + 1].split(",")
    assert usermod[-1] == user
    assert groups == _one(unit, "Service", "SupplementaryGroups").split()
    doc = _doc_command(_section(3), "sudo usermod -aG")
    assert doc.split()[-2].split(",") == groups, "deploy.md step 3 gives the same groups"
    assert ["chown", f"{user}:{user}", data_dir] in commands


@needs_bash
def test_the_configuration_key_and_persona_are_where_the_config_points(plan):
    unit, commands = _payload_unit(), plan["commands"]
    config = tomllib.loads(PI_CONFIG.read_text())
    user = _one(unit, "Service", "User")
    key = config["uplink"]["key_file"]
    assert _installed(commands)[key][1] == "600"
    assert ["chown", f"{user}:{user}", key] in commands
    assert Path(key).parent == Path(shlex.split(_one(unit, "Service", "ExecStart"))[-1]).parent
    bundle = config["persona"]["bundle"]
    assert _the(commands, "cp", "-R")[-1] == f"{bundle}/"


@needs_bash
def test_the_watchdog_is_deploy_md_step_7s_and_the_unit_leaves_its_device_alone(plan):
    conf = "/etc/systemd/system.conf.d/10-watchdog.conf"
    lines = _written(plan["commands"], conf)
    assert lines == ["[Manager]", "RuntimeWatchdogSec=15"]
    assert lines == _doc_printf(_section(7), conf)
    assert "/dev/watchdog" in plan["out"] and "/dev/watchdog" in _section(7)
    # systemd (PID 1) feeds the hardware watchdog; the payload may never open it.
    allowed = " ".join(values(_payload_unit(), "Service", "DeviceAllow"))
    assert "watchdog" not in allowed and "char-misc" not in allowed


@needs_bash
def test_packages_llama_and_read_only_root_are_deploy_md_s(plan):
    commands = plan["commands"]
    apt = _the(commands, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install")
    doc = _doc_command(_section(5), "sudo apt install").split()
    assert "--no-install-recommends" in apt and "--no-install-recommends" in doc
    assert [w for w in apt[6:] if not w.startswith("-")] == [w for w in doc[3:] if not w.startswith("-")]
    (wheel,) = [c for c in commands if c[0].endswith("/bin/pip") and "--no-deps" in c]
    assert wheel[1:4] == ["install", "--no-deps", wheel[-1]] and wheel[0].endswith("/.venv/bin/pip")
    journald = "/etc/systemd/journald.conf.d/10-ram.conf"
    assert _written(commands, journald) == _doc_printf(_section(10), journald)
    assert plan["out"].index("== readonly") > plan["out"].index("== units"), "the read-only root comes last"


# --------------------------------------------------------------------------- the script itself


@needs_bash
def test_a_dry_run_prints_the_same_plan_twice_and_writes_nothing(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    options = ["--dry-run", "--root", str(root), *_inputs(tmp_path)]
    first, second = _install(*options).stdout, _install(*options).stdout
    assert first == second
    assert "would change" in first and not list(root.iterdir()), "a dry run touches nothing"


@needs_bash
def test_a_key_keygen_did_not_make_is_refused(tmp_path):
    """A bare key (64 hex digits, as keygen wrote before its versioned line) is no flight key here:
    the payload would refuse it too (stratoecho/wire/uplink_keys.py)."""
    root = tmp_path / "root"
    root.mkdir()
    bare = tmp_path / "bare.key"
    bare.write_text(os.urandom(32).hex() + "\n")
    bare.chmod(0o600)
    out = _install("--dry-run", "--root", str(root), "--only", "key", "--key", str(bare)).stdout
    assert f"would stop here: {bare} holds no flight key as keygen writes one" in out  # a real run stops there
    assert "python -m groundstation keygen FILE" in out and "uplink.allow_raw_key" in out


@needs_bash
def test_help_lists_the_options_deploy_md_documents():
    out = _install("--help").stdout
    options = sorted(set(re.findall(r"^  (--[a-z-]+)", out, re.M)))
    assert "--dry-run" in options and "--root" in options and len(options) >= 10
    doc = DEPLOY_MD.read_text()
    assert "deploy/install-pi.sh" in doc
    assert [o for o in options if o not in doc] == [], "every option of the script is in docs/deploy.md"
    wrong = _install("--no-such-option", check=False)
    assert wrong.returncode == 2 and "unknown option" in wrong.stderr


def test_shellcheck_finds_nothing():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed here (apt-get install shellcheck); the script's style is unchecked")
    files = [str(SCRIPT), str(SCRIPT.with_name("install-pi-steps.sh"))]
    result = subprocess.run([shellcheck, "-x", *files], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout


# --------------------------------------------------------------------------- for real, in a throwaway root


def _throwaway_root(base: Path) -> Path:
    """A root with the Pi's groups and the payload's user (this test's own ids, so no root needed)."""
    root = base / "root"
    (root / "etc").mkdir(parents=True)
    uid, gid = os.getuid(), os.getgid()
    (root / "etc" / "passwd").write_text(f"stratoecho:x:{uid}:{gid}::/var/lib/stratoecho:/usr/sbin/nologin\n")
    groups = "".join(f"{g}:x:{900 + i}:stratoecho\n" for i, g in enumerate(["dialout", "i2c", "spi", "gpio", "video"]))
    (root / "etc" / "group").write_text(f"stratoecho:x:{gid}:\n" + groups)
    (root / "etc" / "fstab").write_text("")
    return root


@needs_bash
@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout: the script clones the project")
def test_installing_twice_into_a_root_changes_nothing_the_second_time(tmp_path):
    root = _throwaway_root(tmp_path)
    inputs = _inputs(tmp_path)
    steps = "data,user,project,config,persona,key,watchdog" + (",units" if shutil.which("systemctl") else "")
    first = _install("--root", str(root), "--only", steps, *inputs)
    assert "   $ " in first.stdout and "done; changed:" in first.stdout
    project = root / "opt/stratoecho"  # a clone: the committed files, whatever this tree has changed
    assert (root / "etc/stratoecho/payload.toml").read_bytes() == (project / "config/payload.pi.toml").read_bytes()
    key = (root / "etc/stratoecho/uplink.key").stat()
    assert stat.S_IMODE(key.st_mode) == 0o600 and key.st_uid == os.getuid()
    assert "LABEL=stratodata" in (root / "etc/fstab").read_text()
    assert (root / "opt/stratoecho/persona/persona.toml").is_file()
    if "units" in steps:
        assert (root / "etc/systemd/system" / PAYLOAD_UNIT).read_bytes() == (project / "systemd" / PAYLOAD_UNIT).read_bytes()
        assert (root / "etc/systemd/system/multi-user.target.wants" / PAYLOAD_UNIT).is_symlink()
    second = _install("--root", str(root), "--only", steps, *inputs)
    assert "nothing to change: every step was already done" in second.stdout
    assert "   $ " not in second.stdout, "a second run runs no command"
    other = tmp_path / "other.key"
    write_key_file(other)
    refused = _install("--root", str(root), "--only", "key", "--key", str(other), check=False)
    assert refused.returncode == 1 and "never replaced" in refused.stderr
    assert (root / "etc/stratoecho/uplink.key").read_bytes() == Path(inputs[1]).read_bytes()


@needs_bash
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None,
                    reason="making a user in another root (useradd --prefix) needs root and shadow's tools")
def test_the_user_step_makes_the_user_and_its_groups_in_a_bare_root(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name, line in {"passwd": "root:x:0:0::/root:/bin/sh", "group": "root:x:0:", "shadow": "root:*:19000:0:99999:7:::",
                       "gshadow": "root:*::"}.items():
        (root / "etc" / name).write_text(line + "\n")
    bare = _install("--root", str(root), "--only", "data,user", check=False)
    assert bare.returncode == 1 and "--create-groups" in bare.stderr, "missing groups stop it, naming the option"
    first = _install("--root", str(root), "--only", "data,user", "--create-groups")
    assert "useradd" in first.stdout and "usermod" in first.stdout
    user = _one(_payload_unit(), "Service", "User")
    groups = (root / "etc" / "group").read_text()
    for group in _one(_payload_unit(), "Service", "SupplementaryGroups").split():
        assert re.search(rf"^{group}:x:\d+:{user}$", groups, re.M), f"{user} is not in {group}"
    data = root / "var/lib/stratoecho"
    assert stat.S_IMODE(data.stat().st_mode) == 0o750
    assert "nothing to change" in _install("--root", str(root), "--only", "data,user", "--create-groups").stdout


@needs_bash
@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout: the script clones the project")
def test_under_umask_000_the_install_keeps_its_secrets_and_code_closed(tmp_path):
    """Issue 50, item 7: run as root from a shell whose umask is 000 (some sudo configurations
    pass it on), the install made /etc/stratoecho mode 777 and copied the persona bundle, its
    weights and build log, readable by every user. Every mode it sets is its own now: nothing it
    makes is writable by group or others, the flight key is the service user's alone (600), and
    the bundle is readable by the service's group only."""
    root = _throwaway_root(tmp_path)
    for name in ("passwd", "group", "fstab"):
        (root / "etc" / name).chmod(0o644)
    inputs = _inputs(tmp_path)
    persona = Path(inputs[inputs.index("--persona") + 1])
    (persona / "model.gguf").write_bytes(b"GGUF weights" * 100)
    (persona / "logs").mkdir()
    (persona / "logs" / "build.log").write_text("the owner's messages, as the build read them\n")
    for path in (persona, *persona.rglob("*")):
        path.chmod(0o777 if path.is_dir() else 0o666)  # as an open source folder hands them over
    steps = "data,user,project,config,persona,key,watchdog" + (",units" if shutil.which("systemctl") else "")
    made_before = {p for p in root.rglob("*")}
    _install("--root", str(root), "--only", steps, *inputs, umask="000")

    gid = os.getgid()  # the service's group in this root (_throwaway_root)
    open_to_others = []
    for path in root.rglob("*"):
        if path.is_symlink() or path in made_before:
            continue
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            open_to_others.append(f"{path.relative_to(root)} {mode:04o}")
    assert open_to_others == [], "writable by group or others"
    bundle = root / tomllib.loads(PI_CONFIG.read_text())["persona"]["bundle"].lstrip("/")
    for path in [bundle, *bundle.rglob("*")]:
        st = path.lstat()
        assert stat.S_IMODE(st.st_mode) & stat.S_IRWXO == 0, f"others may use {path.relative_to(root)}"
        assert st.st_gid == gid and st.st_mode & stat.S_IRGRP, f"the service's group cannot read {path}"
    assert (bundle / "logs" / "build.log").read_text().startswith("the owner's")
    key = (root / "etc/stratoecho/uplink.key").stat()
    assert stat.S_IMODE(key.st_mode) == 0o600 and key.st_uid == os.getuid()
    assert stat.S_IMODE((root / "etc/stratoecho").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "var/lib/stratoecho").stat().st_mode) == 0o750

    # A bundle an earlier install left open is closed by the next run, and said so.
    (bundle / "model.gguf").chmod(0o644)
    (root / "etc/stratoecho").chmod(0o777)
    again = _install("--root", str(root), "--only", "config,persona", umask="000")
    assert "changed: config persona" in again.stdout
    assert stat.S_IMODE((bundle / "model.gguf").stat().st_mode) == 0o640
    assert stat.S_IMODE((root / "etc/stratoecho").stat().st_mode) == 0o755
    assert "nothing to change" in _install("--root", str(root), "--only", "config,persona").stdout
