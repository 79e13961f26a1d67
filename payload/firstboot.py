"""First boot of a flashed card: the flight's settings from the boot partition (`make pi-image`).

Raspberry Pi Imager ("Use custom", then its settings) and Raspberry Pi OS read first-boot settings
from cloud-init NoCloud files on the boot partition (/boot/firmware): `user-data` (YAML that starts
`#cloud-config`), `meta-data` and `network-config`. The flight's own settings ride in `user-data`
under one key of ours, which cloud-init ignores:

    #cloud-config
    hostname: strato1
    stratoecho:
      callsign: STRATO1
      flight_key: stratoecho-flight-key-v1:<64 hex digits>:<8 hex digits>   # python -m groundstation keygen FILE
      radio:                       # the [radio] table of config/payload.pi.toml, key for key
        kind: sx127x
        frequency_mhz: 434.25

and the persona bundle is dropped beside them as the folder `persona/` (persona.toml and its GGUF).

Everything is checked before anything is written. What is missing or malformed is refused: the file,
what was expected and what to do go to the journal and to `stratoecho-refused.txt` on the boot
partition (readable on any computer the card is put in), and the payload's unit does not start
(its drop-in needs SETTINGS_DONE, which only a complete run writes). A complete run writes
/etc/stratoecho/payload.toml (the shipped Pi configuration with this callsign and radio), the key
(mode 600, the payload's user) and the bundle where [persona] bundle points.

    python -m payload.firstboot --boot /boot/firmware     # what stratoecho-firstboot.service runs
    python -m payload.firstboot --boot DIR --check        # only check a prepared boot partition
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from stratoecho.bundle import BundleError, load_bundle
from stratoecho.config import ConfigError
from stratoecho.logs import setup_logging
from stratoecho.wire.uplink_keys import FLIGHT, decode_key, encode_key

log = structlog.get_logger(__name__)

USER_DATA = "user-data"
PERSONA_DIR = "persona"
REFUSED = "stratoecho-refused.txt"
SETTINGS_DONE = Path("/etc/stratoecho/settings-complete")
SECTION = "stratoecho"
CALLSIGN = re.compile(r"[A-Z0-9]{1,6}(-[0-9]{1,2})?|[A-Z0-9]{1,9}")  # amateur callsign, or a payload name
EXAMPLE = (f"{USER_DATA} should start '#cloud-config' and hold\n  {SECTION}:\n    callsign: STRATO1\n"
           "    flight_key: stratoecho-flight-key-v1:<hex>:<crc>   (python -m groundstation keygen FILE)\n"
           "    radio:\n      kind: sx127x\n")


@dataclass
class Settings:
    callsign: str
    key: bytes
    radio: dict
    persona: Path
    hostname: str | None = None


@dataclass
class Refusal:
    problems: list[str] = field(default_factory=list)

    def add(self, file: str, expected: str) -> None:
        self.problems.append(f"{file}: {expected}")


def _yaml(text: str):
    import yaml  # PyYAML: Debian's python3-yaml in the image, as cloud-init itself uses

    return yaml.safe_load(text)


def read_settings(boot: Path, refusal: Refusal) -> Settings | None:
    """The flight's settings from the boot partition, or None with every problem in `refusal`."""
    user_data = boot / USER_DATA
    if not user_data.is_file():
        refusal.add(str(user_data), f"missing. {EXAMPLE}")
        return None
    text = user_data.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("#cloud-config"):
        refusal.add(str(user_data), "the first line is not '#cloud-config' (cloud-init's NoCloud user-data)")
    try:
        doc = _yaml(text)
    except Exception as e:  # noqa: BLE001 - any YAML error is the user's file, said as it is
        refusal.add(str(user_data), f"not YAML: {str(e).splitlines()[0]}")
        return None
    ours = doc.get(SECTION) if isinstance(doc, dict) else None
    if not isinstance(ours, dict):
        refusal.add(str(user_data), f"no '{SECTION}:' mapping. {EXAMPLE}")
        return None
    callsign = str(ours.get("callsign", "")).strip().upper()
    if not callsign:
        refusal.add(str(user_data), f"{SECTION}.callsign missing (your callsign, e.g. M0ABC-11, or a payload name)")
    elif not CALLSIGN.fullmatch(callsign):
        refusal.add(str(user_data), f"{SECTION}.callsign {callsign!r}: letters and digits, at most 9 (or CALL-NN)")
    key = None
    line = ours.get("flight_key")
    if not line:
        refusal.add(str(user_data), f"{SECTION}.flight_key missing: the line of the key file that "
                                    "python -m groundstation keygen FILE writes (stratoecho-flight-key-v1:<hex>:<crc>)")
    else:
        try:
            key = decode_key(str(line).strip().encode(), FLIGHT)
        except ValueError as e:  # KeyFileError and NotKeygenForm among them: the sentence says what is wrong
            refusal.add(str(user_data), f"{SECTION}.flight_key {e}")
    radio = ours.get("radio")
    if not isinstance(radio, dict) or not isinstance(radio.get("kind"), str):
        refusal.add(str(user_data), f"{SECTION}.radio missing or without 'kind' (sx127x, sx126x, lora_uart, kiss, udp: "
                                    "the [radio] table of config/payload.pi.toml)")
        radio = None
    elif bad := [k for k, v in radio.items() if not isinstance(v, str | int | float | bool)]:
        refusal.add(str(user_data), f"{SECTION}.radio: {', '.join(bad)}: a number, a word or true/false, not a list")
    persona = boot / PERSONA_DIR
    try:
        load_bundle(persona, verify=True)
    except BundleError as e:
        refusal.add(str(persona), f"the persona bundle (persona.toml and its GGUF, from host_training build): {e}")
    hostname = doc.get("hostname") if isinstance(doc.get("hostname"), str) else None
    if refusal.problems or key is None or radio is None:
        return None
    return Settings(callsign=callsign, key=key, radio=radio, persona=persona, hostname=hostname)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(shipped: str, settings: Settings) -> str:
    """The shipped Pi configuration with this flight's callsign and [radio] table (comments kept elsewhere).
    A radio that is not a LoRa chip keys one mode only: [radio.pictures] is left out for it."""
    lines, out, skipping = shipped.splitlines(), [], False
    chip = settings.radio["kind"] in ("sx127x", "sx126x")
    for line in lines:
        header = re.match(r"\s*\[([^\]]+)\]", line)
        if header:
            skipping = header.group(1) == "radio" or (header.group(1) == "radio.pictures" and not chip)
            if header.group(1) == "radio":
                out.append("[radio]                       # from the boot partition's user-data (first boot)")
                out += [f"{k} = {_toml_value(v)}" for k, v in settings.radio.items()]
                out.append("")
                continue
        if skipping:
            continue
        if re.match(r"callsign\s*=", line) and "[" not in "".join(out):  # the top-level key only
            line = f"callsign = {_toml_value(settings.callsign)}   # from the boot partition's user-data"
        out.append(line)
    return "\n".join(out) + "\n"


def check_config(text: str) -> str | None:
    """What the payload would refuse in this configuration, or None."""
    from payload.config import load_config

    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(text)
    try:
        load_config(f.name)
        return None
    except (ConfigError, ValueError, tomllib.TOMLDecodeError) as e:
        return str(e).replace(f.name, "the configuration")
    finally:
        os.unlink(f.name)


def refuse(boot: Path, refusal: Refusal) -> None:
    for problem in refusal.problems:
        log.error("first_boot_refused", problem=problem)
    text = ("stratoecho did not start: the flight's settings on this card are not complete.\n"
            "Fix what is listed, put the card back in the Pi and power it on again.\n\n"
            + "\n".join(f"- {p}" for p in refusal.problems) + "\n\n(docs/deploy.md, \"Flash this image\")\n")
    try:
        (boot / REFUSED).write_text(text)
    except OSError as e:
        log.error("refusal_not_written", file=str(boot / REFUSED), error=str(e))


def apply(settings: Settings, config_text: str, etc: Path, persona_dest: Path, user: str | None) -> None:
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "payload.toml").write_text(config_text)
    key = etc / "uplink.key"
    key.write_text(encode_key(settings.key, FLIGHT))  # the line and its one newline, as keygen writes it
    key.chmod(0o600)
    if persona_dest.exists():
        shutil.rmtree(persona_dest)
    shutil.copytree(settings.persona, persona_dest)
    if user is not None:
        for path in (key, persona_dest, *persona_dest.rglob("*")):
            shutil.chown(path, user, user)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m payload.firstboot",
        description="Read the flight's settings (callsign, flight key, radio, persona) from the boot partition's "
                    "cloud-init files and install them; refuse clearly, in the journal and in "
                    f"{REFUSED} on the boot partition, what is missing or malformed.",
        epilog=EXAMPLE + "exit status: 0 installed (or, with --check, complete); 1 refused",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--boot", type=Path, default=Path("/boot/firmware"), help="the boot partition (default %(default)s)")
    p.add_argument("--shipped", type=Path, default=Path("/opt/stratoecho/config/payload.pi.toml"),
                   help="the Pi configuration the settings go into (default %(default)s)")
    p.add_argument("--etc", type=Path, default=SETTINGS_DONE.parent, help="where payload.toml and uplink.key go")
    p.add_argument("--user", default="stratoecho", help="who owns the key and bundle ('' for nobody's change)")
    p.add_argument("--check", action="store_true", help="only check the boot partition; write nothing")
    args = p.parse_args(argv)
    setup_logging()
    refusal = Refusal()
    settings = read_settings(args.boot, refusal)
    config_text = None
    if settings is not None:
        config_text = render_config(args.shipped.read_text(), settings)
        if (problem := check_config(config_text)) is not None:
            refusal.add(str(args.boot / USER_DATA), f"{SECTION}.radio: the payload would refuse it: {problem}")
    if refusal.problems:
        if not args.check:
            refuse(args.boot, refusal)
        else:
            print("\n".join(refusal.problems), file=sys.stderr)
        return 1
    if args.check:
        print(f"{args.boot}: complete (callsign {settings.callsign}, radio {settings.radio['kind']})")
        return 0
    persona_dest = Path(tomllib.loads(config_text)["persona"]["bundle"])
    apply(settings, config_text, args.etc, persona_dest, args.user or None)
    (args.boot / REFUSED).unlink(missing_ok=True)
    (args.etc / SETTINGS_DONE.name).write_text("settings read from the boot partition\n")
    log.info("first_boot_settings_installed", callsign=settings.callsign, radio=settings.radio["kind"],
             persona=str(persona_dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
