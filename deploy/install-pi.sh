#!/usr/bin/env bash
# Install the payload on Raspberry Pi OS Bookworm (64-bit): the scriptable steps of
# docs/deploy.md in one idempotent run. Run as root from a checkout of the repository:
#
#   sudo deploy/install-pi.sh --dry-run            # print every command it would run, change nothing
#   sudo deploy/install-pi.sh --key uplink.key --wheel llama_cpp_python-….whl
#
# Each step says what it does, does it only if it is not done yet (a second run changes nothing
# and says so), checks its result, and stops with a message naming what failed and what to do.
# The steps themselves are in install-pi-steps.sh; `--help` lists the options.

set -u -o pipefail
# Whatever umask the calling shell had (some sudo configurations pass on 000): what this script
# makes (the clone, the venv, folders) is never writable by group or others. Secrets and the
# persona bundle get their own modes explicitly besides (install -m, chmod), umask or not.
umask 022

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/.." && pwd)   # the checkout this script runs from

# What docs/deploy.md names; tests/test_install_script.py holds these to the doc and the units.
PROJECT=/opt/stratoecho
VENV=$PROJECT/.venv
DATA_DIR=/var/lib/stratoecho
DATA_LABEL=stratodata
FSTAB_LINE="LABEL=$DATA_LABEL  $DATA_DIR  ext4  defaults,noatime,nofail,x-systemd.device-timeout=30s  0  2"
USER_NAME=stratoecho
GROUPS_NEEDED="dialout i2c spi gpio video"
APT_PACKAGES="git python3-venv python3-dev build-essential cmake python3-picamera2 python3-lgpio i2c-tools"
ETC_DIR=/etc/stratoecho
CONFIG=$ETC_DIR/payload.toml
SHIPPED_CONFIG=config/payload.pi.toml
KEY_PATH=$ETC_DIR/uplink.key
UNITS="stratoecho-payload.service"
WATCHDOG_CONF=/etc/systemd/system.conf.d/10-watchdog.conf
WATCHDOG_SEC=15
WATCHDOG_DEVICE=/dev/watchdog
JOURNALD_CONF=/etc/systemd/journald.conf.d/10-ram.conf
ALL_STEPS="packages data user project venv llama payload config persona key watchdog units readonly"

usage() {
    cat <<EOF
Usage: deploy/install-pi.sh [OPTION]...

Install the stratoecho payload on Raspberry Pi OS Bookworm (64-bit), as docs/deploy.md does by
hand: the data partition's mount (step 2), the user and its groups (3), the apt packages, the
project in $PROJECT and its venv (5), llama-cpp-python and the payload (5), configuration,
persona and flight key (6), the hardware watchdog (7), the systemd unit (8) and, only when asked,
the read-only root (10). Not done here: the SD card and the partition itself (1, 2), UART, I2C,
SPI and the camera (4), the bench checks (9).

Run as root from a checkout of the repository. Every step is skipped when already done; a step
whose result is wrong stops the script with what to do. Nothing is ever repartitioned, no
existing configuration, flight key or persona is overwritten, swap is never changed.

Steps, in order: $ALL_STEPS

Options:
  --dry-run           print every command it would run, in order, and change nothing
                      (runs as any user)
  --root DIR          install into DIR (a mounted image or a root made with mmdebstrap)
                      instead of /: every path written is under DIR; commands that must run
                      in the system (apt, python, pip) run with chroot DIR
  --wheel FILE        install llama-cpp-python from FILE (the wheel make pi-wheel builds),
                      pip install --no-deps, instead of compiling it here
  --build-on-pi       allow compiling llama-cpp-python where it takes long or needs swap:
                      under 1 GiB of memory (Zero 2 W, Pi 3, a 1 GB Pi 4) and under --root
  --key FILE          the flight key to install as $KEY_PATH (stratoecho, mode 600),
                      made with: python -m groundstation keygen FILE
  --persona DIR       the persona bundle to copy where [persona] bundle points
  --start             start the payload once its unit is enabled (not with --root)
  --read-only-root    last: journal in RAM and the overlay root (deploy.md step 10)
  --create-groups     create those of the groups $GROUPS_NEEDED that are missing
                      (plain Debian; Raspberry Pi OS has them all)
  --only STEP,...     run only these steps (in the order above)
  -h, --help          this help

Exit status: 0 when every step is done (or, with --dry-run, printed); 1 when a step stops;
2 for a wrong option.
EOF
}

# --- options ----------------------------------------------------------------------------------

DRY=0 ROOT=/ WHEEL="" BUILD_ON_PI=0 KEY_FILE="" PERSONA_DIR="" START=0 READ_ONLY=0
CREATE_GROUPS=0 ONLY=""

bad_option() { printf 'install-pi: %s (see --help)\n' "$*" >&2; exit 2; }

parse_options() {
    while [ $# -gt 0 ]; do
        case $1 in
            --dry-run) DRY=1 ;;
            --root) [ $# -ge 2 ] || bad_option "--root needs a directory"; ROOT=$2; shift ;;
            --wheel) [ $# -ge 2 ] || bad_option "--wheel needs a file"; WHEEL=$2; shift ;;
            --build-on-pi) BUILD_ON_PI=1 ;;
            --key) [ $# -ge 2 ] || bad_option "--key needs a file"; KEY_FILE=$2; shift ;;
            --persona) [ $# -ge 2 ] || bad_option "--persona needs a directory"; PERSONA_DIR=$2; shift ;;
            --start) START=1 ;;
            --read-only-root) READ_ONLY=1 ;;
            --create-groups) CREATE_GROUPS=1 ;;
            --only) [ $# -ge 2 ] || bad_option "--only needs steps"; ONLY=$(printf '%s' "$2" | tr ',' ' '); shift ;;
            -h|--help) usage; exit 0 ;;
            *) bad_option "unknown option: $1" ;;
        esac
        shift
    done
    [ -d "$ROOT" ] || bad_option "--root $ROOT: no such directory"
    ROOT=$(cd "$ROOT" && pwd -P)
    local step
    for step in $ONLY; do
        case " $ALL_STEPS " in *" $step "*) ;; *) bad_option "--only: no step '$step' (steps: $ALL_STEPS)" ;; esac
    done
    absolute WHEEL; absolute KEY_FILE; absolute PERSONA_DIR
}

# An option's file as an absolute path, so that it means the same after a cd or a chroot.
absolute() {
    local value=${!1}
    [ -n "$value" ] || return 0
    [ -e "$value" ] || bad_option "$value: no such file or directory"
    case $value in /*) ;; *) value=$PWD/$value ;; esac
    printf -v "$1" '%s' "$value"
}

# --- output and actions -----------------------------------------------------------------------

STEP="" CHANGED=0 CHANGED_STEPS=""

say() { printf '   - %s\n' "$*"; }

show_cmd() {
    local quoted
    quoted=$(printf '%q ' "$@")
    printf '   $ %s\n' "${quoted% }"
}

# Stop with a message (the step, what failed, what to do). In a dry run: say where it would stop.
die() {
    if [ "$DRY" = 1 ]; then
        printf '   ! would stop here: %s\n' "$*"
        return 0
    fi
    printf 'install-pi: step %s: STOP: %s\n' "$STEP" "$*" >&2
    exit 1
}

# A command that changes the system: printed, then run (not in a dry run); stops if it fails.
run() {
    show_cmd "$@"
    CHANGED=1
    [ "$DRY" = 1 ] && return 0
    "$@" || die "this command failed (exit status $?): $(printf '%q ' "$@")"
}

# The same, with its output written to (>) or appended to (>>) a file.
run_to() {
    local mode=$1 dest=$2 quoted
    shift 2
    quoted=$(printf '%q ' "$@")
    printf '   $ %s %s %q\n' "${quoted% }" "$mode" "$dest"
    CHANGED=1
    [ "$DRY" = 1 ] && return 0
    if [ "$mode" = ">>" ]; then "$@" >>"$dest"; else "$@" >"$dest"; fi \
        || die "could not write $dest (exit status $?)"
}

# A file of the given lines, mode 644.
write_lines() {
    local dest=$1
    shift
    run_to ">" "$dest" printf '%s\n' "$@"
    run chmod 644 "$dest"
}

# A command run inside the system being installed: itself under /, chroot DIR under --root.
in_root() {
    if [ "$ROOT" = / ]; then run "$@"; else run chroot "$ROOT" "$@"; fi
}

# Whether commands can run inside the system being installed (chroot needs root).
can_exec_in_root() {
    [ "$ROOT" = / ] || { [ "$(id -u)" = 0 ] && [ -x "$ROOT/bin/sh" ]; }
}

# Whether the payload is installed in the venv (a run with --only may leave it out).
payload_installed() {
    can_exec_in_root && [ -x "$(R "$VENV")/bin/python" ] || return 1
    if [ "$ROOT" = / ]; then "$VENV/bin/python" -c 'import payload' 2>/dev/null
    else chroot "$ROOT" "$VENV/bin/python" -c 'import payload' 2>/dev/null; fi
}

need_exec_in_root() {
    can_exec_in_root || die "cannot run commands inside $ROOT: chroot needs root, and $ROOT needs its own /bin/sh (a root made with mmdebstrap has one); run as root, or leave this step out with --only"
}

# Check a result: quiet when it holds, a stop naming what does not (with the command's output).
check() {
    local what=$1 hint=$2 out
    shift 2
    if [ "$DRY" = 1 ]; then
        printf '   ? would check: %s\n' "$what"
        return 0
    fi
    if out=$("$@" 2>&1); then
        printf '   ok: %s\n' "$what"
    else
        [ -z "$out" ] || printf '%s\n' "$out" | tail -n 8 | sed 's/^/     | /' >&2
        die "not so: $what. $hint"
    fi
}

check_in_root() {
    local what=$1 hint=$2
    shift 2
    if [ "$ROOT" = / ]; then check "$what" "$hint" "$@"; else check "$what" "$hint" chroot "$ROOT" "$@"; fi
}

# A path of the system being installed, as seen from here.
R() {
    if [ "$ROOT" = / ]; then printf '%s' "$1"; else printf '%s%s' "$ROOT" "$1"; fi
}

# --- users and groups of the system being installed -------------------------------------------

passwd_entry() {
    if [ "$ROOT" = / ]; then getent passwd "$1"; else grep -s "^$1:" "$ROOT/etc/passwd"; fi
}

group_entry() {
    if [ "$ROOT" = / ]; then getent group "$1"; else grep -s "^$1:" "$ROOT/etc/group"; fi
}

# uid:gid of a user (its own group), empty if there is no such user.
ids_of() {
    passwd_entry "$1" | awk -F: 'NR == 1 { print $3 ":" $4 }'
}

in_group() {  # USER GROUP
    local entry members gid
    entry=$(group_entry "$2") || return 1
    members=${entry##*:}
    gid=$(printf '%s' "$entry" | cut -d: -f3)
    case ",$members," in *",$1,"*) return 0 ;; esac
    [ "$(ids_of "$1" | cut -d: -f2)" = "$gid" ]
}

# Shadow's tools write the files of another root themselves (--prefix): no chroot needed.
shadow_cmd() {
    local tool=$1
    shift
    if [ "$ROOT" = / ]; then run "$tool" "$@"; else run "$tool" --prefix "$ROOT" "$@"; fi
}

# The user's group as chgrp and find -group take it: by name under /, its gid under --root.
user_group() {
    local ids
    if [ "$ROOT" = / ]; then printf '%s' "$USER_NAME"; return; fi
    ids=$(ids_of "$USER_NAME")
    if [ -n "$ids" ]; then printf '%s' "${ids#*:}"; else printf '%s' "$USER_NAME"; fi
}

# Make PATH (a path of the installed system) the user's: by name under /, by its ids under --root.
own() {
    local path=$1 ids
    if [ "$ROOT" = / ]; then run chown "$USER_NAME:$USER_NAME" "$path"; return; fi
    ids=$(ids_of "$USER_NAME")
    if [ -n "$ids" ]; then run chown "$ids" "$(R "$path")"; else run chown "$USER_NAME:$USER_NAME" "$(R "$path")"; fi
}

owned_by_user() {  # PATH: owned by the user and its group
    [ -e "$(R "$1")" ] && [ "$(stat -c %u:%g "$(R "$1")")" = "$(ids_of "$USER_NAME")" ]
}

# A value of a TOML file (dotted key), empty if absent.
toml_get() {
    python3 - "$1" "$2" <<'EOF' 2>/dev/null
import sys, tomllib
value = tomllib.load(open(sys.argv[1], "rb"))
for part in sys.argv[2].split("."):
    value = value.get(part, {}) if isinstance(value, dict) else {}
print(value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else "")
EOF
}

# The configuration the payload will read: the installed one once there, else the shipped one.
config_file() {
    if [ -f "$(R "$CONFIG")" ]; then R "$CONFIG"; elif [ -f "$(R "$PROJECT")/$SHIPPED_CONFIG" ]; then
        printf '%s' "$(R "$PROJECT")/$SHIPPED_CONFIG"; else printf '%s' "$SRC/$SHIPPED_CONFIG"; fi
}

# --- the run ----------------------------------------------------------------------------------

wanted() {
    [ -z "$ONLY" ] && return 0
    case " $ONLY " in *" $1 "*) return 0 ;; esac
    return 1
}

step() {  # NAME TITLE: run step_NAME under a header, and say whether it changed anything
    STEP=$1 CHANGED=0
    printf '\n== %s: %s\n' "$1" "$2"
    "step_$1"
    if [ "$CHANGED" = 0 ]; then
        printf '   = nothing to change\n'
    else
        CHANGED_STEPS="$CHANGED_STEPS $1"
        if [ "$DRY" = 1 ]; then printf '   = would change\n'; else printf '   = changed\n'; fi
    fi
}

main() {
    parse_options "$@"
    if [ ! -f "$SRC/pyproject.toml" ] || [ ! -f "$SRC/systemd/stratoecho-payload.service" ]; then
        bad_option "$SRC is not a stratoecho checkout: run the script from its deploy/ folder"
    fi
    if [ "$DRY" = 0 ] && [ "$(id -u)" != 0 ]; then
        [ "$ROOT" != / ] || { printf 'install-pi: run it as root (sudo), or with --dry-run\n' >&2; exit 1; }
        printf 'install-pi: not root: installing into %s as far as this user may write there\n' "$ROOT"
    fi
    local mode="installing"
    [ "$DRY" = 1 ] && mode="dry run, nothing is changed"
    printf 'install-pi: %s into %s from %s\n' "$mode" "$ROOT" "$SRC"
    # shellcheck source=deploy/install-pi-steps.sh
    . "$HERE/install-pi-steps.sh"
    run_steps
    if [ -z "$CHANGED_STEPS" ]; then
        printf '\ninstall-pi: nothing to change: every step was already done\n'
    elif [ "$DRY" = 1 ]; then
        printf '\ninstall-pi: dry run: would change:%s\n' "$CHANGED_STEPS"
    else
        printf '\ninstall-pi: done; changed:%s\n' "$CHANGED_STEPS"
    fi
}

main "$@"
