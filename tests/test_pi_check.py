"""`make pi-check` (sim/bench/run/pi_check.py) runs for long and as root, outside `make test`; this
checks, fast, that what it asks of the install script is what the script has, that it refuses
clearly without root or its inputs, and that its figures read as docs/deploy.md quotes them."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from sim.bench.run import pi_check

ROOT = Path(__file__).resolve().parent.parent


def test_the_steps_it_asks_of_the_install_script_are_the_scripts():
    help_text = subprocess.run([ROOT / "deploy" / "install-pi.sh", "--help"], capture_output=True, text=True,
                               check=True).stdout
    steps = re.search(r"Steps, in order: (.*)", help_text).group(1).split()
    asked = pi_check.SCRIPT_STEPS.split(",")
    assert set(asked) <= set(steps) and asked == [s for s in steps if s in asked]  # known, in the script's order
    assert {"packages", "payload"} == set(steps) - set(asked) - {"readonly"}  # the two Pi OS-only, said why


def test_it_says_what_it_needs_before_doing_anything(tmp_path, capsys):
    if os.geteuid() == 0:
        assert pi_check.main(["--wheel", str(tmp_path / "none.whl"), "--root", str(tmp_path / "root")]) == 2
        assert "make pi-wheel" in capsys.readouterr().err
        wheel = tmp_path / "llama_cpp_python-0.3.36-py3-none-manylinux_2_36_aarch64.whl"
        wheel.write_bytes(b"")
        assert pi_check.main(["--wheel", str(wheel), "--persona", str(tmp_path), "--root", str(tmp_path / "r")]) == 2
        assert "make persona" in capsys.readouterr().err
    else:
        assert pi_check.main([]) == 2 and "needs root" in capsys.readouterr().err
    assert not (tmp_path / "root").exists() and not (tmp_path / "r").exists()


def test_the_summary_reads_the_flight_and_the_headroom():
    tokens = {"x86_64": {"tokens": [1, 2, 3], "text": "a b c"}, "aarch64": {"tokens": [1, 2, 4], "text": "a b d"},
              "same": False, "parted_at": 2, "aarch64_s": 9.5}
    report = {"musings": {"generated": 5, "sent": 4, "delivered": 3}, "telemetry": {"sent": 30, "received": 27},
              "gateway": {"lines": 40, "violations": 0}, "flight_s": 1800}
    peak = {"payload": (80 * 1024, 60 * 1024), "persona worker": (230 * 1024, 200 * 1024),
            "together": (310 * 1024, 260 * 1024)}
    native = {"payload": (60 * 1024, 50 * 1024), "persona worker": (200 * 1024, 180 * 1024),
              "together": (290 * 1024, 250 * 1024)}
    rows = pi_check.summary(tokens, {"report": report, "peak_kb": peak, "wall_s": 700}, native)
    assert "parted at token 2: 'a b c' / 'a b d'" in rows[0]
    assert "30 flight minutes in 700 s; musings made 5, aired 4, heard 3; sentences heard 27/30" in rows[1]
    assert "gateway violations 0" in rows[1]
    assert "memory, persona worker: peak RSS 230 MB, USS 200 MB under qemu" in rows[3] and "200 / 180 MB natively" in rows[3]
    assert "512 MB less the native 290 MB: 222 MB for the kernel" in rows[-1]


@pytest.mark.parametrize("argv", [["--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        pi_check.parse_args(argv)
    assert e.value.code == 0 and "--minutes" in capsys.readouterr().out


def test_both_checks_boot_their_probe_the_same_way(tmp_path):
    """pi-check and pi-image's check install their probe with one helper: the shipped unit's check
    drop-in, the script, a oneshot unit after what it watches, enabled by its link."""
    from sim.bench.run.pi_check import BOOT_DROPIN, install_probe

    root = tmp_path / "root"
    wants = install_probe(root, "some-probe", "#!/bin/sh\necho hi\n", "a probe", "stratoecho-firstboot.service")
    assert (root / "etc/systemd/system/stratoecho-payload.service.d/pi-check.conf").read_text() == BOOT_DROPIN
    script = root / "usr/local/sbin/some-probe"
    assert script.read_text() == "#!/bin/sh\necho hi\n" and script.stat().st_mode & 0o111
    unit = (root / "etc/systemd/system/some-probe.service").read_text()
    assert "After=stratoecho-firstboot.service" in unit and "ExecStart=/usr/local/sbin/some-probe" in unit
    assert "Description=a probe" in unit and "Type=oneshot" in unit
    assert wants.is_symlink() and str(wants.readlink()) == "/etc/systemd/system/some-probe.service"
    again = install_probe(root, "some-probe", "#!/bin/sh\n", "a probe", "x.service")  # a kept root: installed again
    assert again == wants and wants.is_symlink()
