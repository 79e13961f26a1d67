# The steps of deploy/install-pi.sh, sourced by it (its helpers: run, in_root, check, die, R...).
# Each step_NAME does what docs/deploy.md's step says, only what is not done yet, then checks.
# shellcheck shell=bash

# --- docs/deploy.md §5: the apt packages -------------------------------------------------------

package_installed() {
    [ "$(dpkg-query --admindir="$(R /var/lib/dpkg)" -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

all_packages_installed() {
    local p
    for p in $APT_PACKAGES; do package_installed "$p" || return 1; done
}

step_packages() {
    local p missing=""
    for p in $APT_PACKAGES; do package_installed "$p" || missing="$missing $p"; done
    if [ -z "$missing" ]; then
        say "installed already: $APT_PACKAGES"
    else
        say "missing:$missing (--no-install-recommends: no desktop's worth of camera packages)"
        need_exec_in_root
        in_root apt-get update
        # shellcheck disable=SC2086  # the list is words
        in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $APT_PACKAGES
    fi
    check "every package installed: $APT_PACKAGES" \
        "python3-picamera2 and python3-lgpio come from Raspberry Pi OS's own archive (archive.raspberrypi.com); see apt's message above" \
        all_packages_installed
}

# --- §2: the data partition's mount (the partition itself is made by hand, never here) --------

fstab_entry() {  # the fstab line that mounts DATA_DIR, if any
    awk -v dir="$DATA_DIR" '$1 !~ /^#/ && $2 == dir' "$(R /etc/fstab)" 2>/dev/null
}

data_mounted_right() {
    [ "$(findmnt -n -o FSTYPE,LABEL --mountpoint "$DATA_DIR" | tr -s ' ')" = "ext4 $DATA_LABEL" ]
}

step_data() {
    local entry
    if [ "$ROOT" = / ]; then
        [ -e "/dev/disk/by-label/$DATA_LABEL" ] || blkid -L "$DATA_LABEL" >/dev/null 2>&1 \
            || die "no partition labelled $DATA_LABEL: make it as docs/deploy.md step 2 says (GParted, on another computer, the card out of the Pi); this script never repartitions"
    else
        say "under --root the partition is not looked for: the installed system mounts it by its label at boot"
    fi
    [ -d "$(R "$DATA_DIR")" ] || run mkdir -p "$(R "$DATA_DIR")"
    entry=$(fstab_entry)
    if [ -z "$entry" ]; then
        run_to ">>" "$(R /etc/fstab)" printf '%s\n' "$FSTAB_LINE"
        [ "$ROOT" != / ] || run systemctl daemon-reload
    elif [ "$(printf '%s' "$entry" | awk '{print $1, $3}')" != "LABEL=$DATA_LABEL ext4" ]; then
        die "/etc/fstab mounts something else at $DATA_DIR: '$entry'; make it docs/deploy.md step 2's line ($FSTAB_LINE) by hand"
    else
        say "/etc/fstab mounts $DATA_DIR already: $entry"
    fi
    check "/etc/fstab mounts LABEL=$DATA_LABEL at $DATA_DIR" "docs/deploy.md step 2" \
        test -n "$(fstab_entry)"
    [ "$ROOT" = / ] || return 0
    if data_mounted_right; then say "$DATA_DIR is mounted"; else run mount "$DATA_DIR"; fi
    check "$DATA_DIR is the ext4 partition labelled $DATA_LABEL" \
        "see systemctl status var-lib-stratoecho.mount and docs/deploy.md step 2" data_mounted_right
}

# --- §3: the user and its groups ----------------------------------------------------------------

user_complete() {
    local g
    passwd_entry "$USER_NAME" >/dev/null || return 1
    for g in $GROUPS_NEEDED; do in_group "$USER_NAME" "$g" || return 1; done
}

data_dir_right() {
    owned_by_user "$DATA_DIR" && [ "$(stat -c %a "$(R "$DATA_DIR")")" = 750 ]
}

step_user() {
    local g missing="" absent=""
    for g in $GROUPS_NEEDED; do group_entry "$g" >/dev/null || absent="$absent $g"; done
    if [ -n "$absent" ] && [ "$CREATE_GROUPS" = 0 ]; then
        die "no group$absent here: Raspberry Pi OS has $GROUPS_NEEDED, and its udev rules give the devices to them; on another system pass --create-groups (and give the devices to those groups yourself)"
    fi
    for g in $absent; do [ "$CREATE_GROUPS" = 0 ] || shadow_cmd groupadd --system "$g"; done
    if passwd_entry "$USER_NAME" >/dev/null; then
        say "user $USER_NAME exists"
    else
        shadow_cmd useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home \
            --shell /usr/sbin/nologin "$USER_NAME"
    fi
    for g in $GROUPS_NEEDED; do in_group "$USER_NAME" "$g" || missing="$missing,$g"; done
    if [ -n "$missing" ]; then shadow_cmd usermod -aG "${missing#,}" "$USER_NAME"
    else say "$USER_NAME is in $GROUPS_NEEDED"; fi
    owned_by_user "$DATA_DIR" || own "$DATA_DIR"
    [ "$(stat -c %a "$(R "$DATA_DIR")" 2>/dev/null)" = 750 ] || run chmod 750 "$(R "$DATA_DIR")"
    check "$USER_NAME exists and is in $GROUPS_NEEDED" "docs/deploy.md step 3" user_complete
    check "$DATA_DIR is $USER_NAME's, mode 750" "docs/deploy.md step 3" data_dir_right
}

# --- §5: the project, its venv, llama-cpp-python and the payload --------------------------------

project_present() {
    local p
    p=$(R "$PROJECT")
    [ -f "$p/pyproject.toml" ] && [ -f "$p/systemd/stratoecho-payload.service" ] && [ -f "$p/$SHIPPED_CONFIG" ]
}

step_project() {
    local dest here there trusted
    dest=$(R "$PROJECT")
    if [ "$(cd "$dest" 2>/dev/null && pwd -P)" = "$SRC" ]; then
        say "the script runs from $PROJECT itself"
    elif project_present; then
        say "$PROJECT is there already; left as it is"
        here=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null)
        there=$(git -C "$dest" rev-parse --short HEAD 2>/dev/null)
        [ "$here" = "$there" ] || say "it is at commit ${there:-?}, this checkout at ${here:-?}: update it with git -C $PROJECT pull"
    else
        say "a clone of this checkout's commits (not its uncommitted changes), as docs/deploy.md's git clone"
        # As root, from a checkout another user owns: git refuses that repository unless told it is safe.
        trusted=$(printf 'git -c safe.directory=%q -c safe.directory=%q upload-pack' "$SRC" "$SRC/.git")
        run git clone --upload-pack "$trusted" "file://$SRC" "$dest"
    fi
    check "$PROJECT holds the project" "clone it there (docs/deploy.md step 5)" project_present
}

venv_right() {
    grep -Eq '^include-system-site-packages *= *true' "$(R "$VENV")/pyvenv.cfg" \
        && { [ -e "$(R "$VENV")/bin/python" ] || [ -L "$(R "$VENV")/bin/python" ]; }
}

step_venv() {
    if [ -f "$(R "$VENV")/pyvenv.cfg" ]; then
        venv_right || die "$VENV was made without --system-site-packages, so picamera2 and lgpio (from apt) are not seen in it; remove it (rm -r $VENV) and run again"
        say "$VENV exists, with the system's site packages"
    else
        need_exec_in_root
        in_root python3 -m venv --system-site-packages "$VENV"
    fi
    check "$VENV sees the system's site packages" "docs/deploy.md step 5" venv_right
}

# The version of a distribution installed in the venv (from its .dist-info), empty if none.
venv_version() {
    local info
    info=$(find "$(R "$VENV")"/lib/python3*/site-packages -maxdepth 1 -iname "$1-*.dist-info" 2>/dev/null | head -n 1)
    [ -n "$info" ] || return 0
    info=${info##*/}
    info=${info#*-}
    printf '%s' "${info%.dist-info}"
}

llama_pin() {
    local pyproject
    pyproject="$(R "$PROJECT")/pyproject.toml"
    [ -f "$pyproject" ] || pyproject=$SRC/pyproject.toml
    sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' "$pyproject" | head -n 1
}

mem_mib() {  # FIELD of /proc/meminfo in MiB
    awk -v f="$1:" '$1 == f { print int($2 / 1024) }' /proc/meminfo
}

llama_right() { [ "$(venv_version llama_cpp_python)" = "$(llama_pin)" ]; }

step_llama() {
    local pin have
    pin=$(llama_pin) have=$(venv_version llama_cpp_python)
    if [ -n "$have" ] && [ "$have" = "$pin" ]; then
        say "llama-cpp-python $pin is installed"
    elif [ -n "$WHEEL" ]; then
        install_wheel "$pin"
    else
        build_llama "$pin"
    fi
    check "llama-cpp-python $pin (pyproject.toml's pin) in $VENV" "see pip's message above" llama_right
}

install_wheel() {
    local pin=$1 name=${WHEEL##*/}
    case $name in
        "llama_cpp_python-$pin-"*.whl) say "from the wheel $WHEEL" ;;
        *) die "$name is not a wheel of llama-cpp-python $pin, the version pyproject.toml pins: build it again (make pi-wheel)" ;;
    esac
    need_exec_in_root
    if [ "$ROOT" = / ]; then
        run "$VENV/bin/pip" install --no-deps "$WHEEL"
    else
        run install -m 644 "$WHEEL" "$ROOT/tmp/$name"
        in_root "$VENV/bin/pip" install --no-deps "/tmp/$name"
        run rm -f "$ROOT/tmp/$name"
    fi
}

build_llama() {
    local pin=$1 ram swap
    ram=$(mem_mib MemTotal) swap=$(mem_mib SwapTotal)
    say "no --wheel: compiling llama-cpp-python $pin here for this board (docs/deploy.md step 5: ~30 min on a Pi 4, over an hour on a Zero 2 W)"
    if [ "$ROOT" != / ] && [ "$BUILD_ON_PI" = 0 ]; then
        die "under --root this compiles llama.cpp inside $ROOT (under emulation: hours); give the wheel (--wheel FILE, from make pi-wheel) or pass --build-on-pi"
    fi
    if [ "$ROOT" = / ] && [ "${ram:-0}" -lt 1024 ]; then
        [ "$BUILD_ON_PI" = 1 ] || die "this board has ${ram} MiB of memory (a Zero 2 W or Pi 3): the compiler needs swap and the build takes over an hour. Prefer --wheel FILE (make pi-wheel); to build here, give it swap as docs/deploy.md step 5 says and pass --build-on-pi"
        [ "${swap:-0}" -ge 900 ] || die "${swap} MiB of swap: the compiler outgrows ${ram} MiB. This script never changes swap; set 1024 MiB as docs/deploy.md step 5 says (dphys-swapfile swapoff; CONF_SWAPSIZE=1024 in /etc/dphys-swapfile; dphys-swapfile setup && dphys-swapfile swapon) and run again"
    fi
    need_exec_in_root
    in_root env CMAKE_ARGS=-DGGML_NATIVE=ON CMAKE_BUILD_PARALLEL_LEVEL=2 \
        "$VENV/bin/pip" install --no-cache-dir "llama-cpp-python==$pin"
    [ "${swap:-0}" = 0 ] || say "when the payload is installed, turn swap off for good: dphys-swapfile swapoff && systemctl disable dphys-swapfile (docs/deploy.md step 5)"
}

step_payload() {
    if [ -n "$(venv_version stratoecho)" ]; then
        say "the payload is installed in $VENV"
    else
        need_exec_in_root
        in_root "$VENV/bin/pip" install -e "${PROJECT}[payload]"
    fi
    if can_exec_in_root; then
        check_in_root "$USER_NAME's python imports llama_cpp, picamera2, smbus2, serial, gpiozero" \
            "the import that failed is above (docs/deploy.md step 5)" \
            runuser -u "$USER_NAME" -- "$VENV/bin/python" -c "import llama_cpp, picamera2, smbus2, serial, gpiozero"
    else
        check "the payload is installed in $VENV" "docs/deploy.md step 5" test -n "$(venv_version stratoecho)"
    fi
}

# --- §6: configuration, persona, flight key -----------------------------------------------------

config_right() {
    local file
    file=$(R "$CONFIG")
    [ -f "$file" ] && [ "$(toml_get "$file" data_dir)" = "$DATA_DIR" ]
}

step_config() {
    local shipped
    shipped="$(R "$PROJECT")/$SHIPPED_CONFIG"
    # 755: the configuration is no secret (payload plan reads it as any user); the key in it is 600.
    # Never writable by others, who could swap the key or the configuration for their own.
    if [ ! -d "$(R "$ETC_DIR")" ]; then
        run install -d -m 755 "$(R "$ETC_DIR")"
    elif [ "$(stat -c %a "$(R "$ETC_DIR")")" != 755 ]; then
        run chmod 755 "$(R "$ETC_DIR")"
    fi
    if [ ! -e "$(R "$CONFIG")" ]; then
        run install -m 644 "$shipped" "$(R "$CONFIG")"
        say "edit it for your flight: callsign, radio, [devices], persona.bundle (docs/deploy.md step 6)"
    elif cmp -s "$shipped" "$(R "$CONFIG")"; then
        say "$CONFIG is there, as shipped: edit it for your flight (callsign, radio)"
    else
        say "$CONFIG is there, with your changes: kept, never overwritten"
    fi
    check "$CONFIG exists and its data_dir is $DATA_DIR" "data_dir must be the data partition (docs/deploy.md step 2)" config_right
    check "$ETC_DIR is mode 755" "docs/deploy.md step 6" test "$(stat -c %a "$(R "$ETC_DIR")")" = 755
    if payload_installed; then
        check_in_root "the air plan of $CONFIG closes" "change what payload plan says in $CONFIG and run again" \
            "$VENV/bin/python" -m payload plan "$CONFIG"
    else
        say "the air plan is not checked here (no payload to run yet): $VENV/bin/python -m payload plan $CONFIG"
    fi
}

# The bundle (the owner's model, its build log) is for the service alone: the installer's (root's)
# to change, its group's (the service user's) to read, nobody else's.
BUNDLE_MODES=u=rwX,g=rX,o=

bundle_closed() {  # BUNDLE: everything in it the user's group's, readable by it only
    local dir
    dir=$(R "$1")
    [ -d "$dir" ] || return 1
    [ -z "$(find "$dir" \( ! -group "$(user_group)" -o -perm /g=w -o -perm /o=rwx -o ! -perm -g=r \) -print -quit)" ]
}

close_bundle() {  # BUNDLE
    run chgrp -R "$(user_group)" "$(R "$1")"
    run chmod -R "$BUNDLE_MODES" "$(R "$1")"
}

step_persona() {
    local bundle
    bundle=$(toml_get "$(config_file)" persona.bundle)
    [ -n "$bundle" ] || { say "the configuration flies no persona ([persona] bundle unset)"; return 0; }
    if [ -n "$PERSONA_DIR" ]; then
        [ -f "$PERSONA_DIR/persona.toml" ] || die "$PERSONA_DIR holds no persona.toml: give the folder host_training build wrote"
        if [ ! -e "$(R "$bundle")/persona.toml" ]; then
            # Closed before anything is copied in: others never see the files, whatever their modes
            # on the way (cp keeps the source's, less the umask).
            if [ -d "$(R "$bundle")" ]; then run chmod 750 "$(R "$bundle")"; else run install -d -m 750 "$(R "$bundle")"; fi
            run chgrp "$(user_group)" "$(R "$bundle")"
            run cp -R "$PERSONA_DIR/." "$(R "$bundle")/"
            close_bundle "$bundle"
        elif diff -rq "$PERSONA_DIR" "$(R "$bundle")" >/dev/null 2>&1; then
            say "this persona is at $bundle already"
        else
            die "another persona is at $bundle; it is never overwritten: remove it (rm -r $bundle) and run again to replace it"
        fi
    elif [ -e "$(R "$bundle")/persona.toml" ]; then
        say "a persona is at $bundle"
    else
        say "no persona at $bundle yet: copy your bundle there (docs/deploy.md step 6) or pass --persona DIR"
        return 0
    fi
    # An earlier install may have left it open to every user: closed now.
    bundle_closed "$bundle" || close_bundle "$bundle"
    check "a persona bundle at $bundle ([persona] bundle)" "docs/deploy.md step 6" test -f "$(R "$bundle")/persona.toml"
    check "$bundle is readable by group $USER_NAME only ($BUNDLE_MODES)" "docs/deploy.md step 6" bundle_closed "$bundle"
}

# A key file's form (stratoecho/wire/uplink_keys.py): keygen's line; the bare forms of before only
# where the configuration allows them (uplink.allow_raw_key). The payload checks the rest (the checksum).
key_form_ok() {
    local size
    size=$(stat -c %s "$1")
    case $size in
        98|99|100) head -c 98 "$1" | grep -Eqx 'stratoecho-flight-key-v1:[0-9a-fA-F]{64}:[0-9a-fA-F]{8}' && return 0 ;;
    esac
    [ "$(toml_get "$(config_file)" uplink.allow_raw_key)" = true ] || return 1
    case $size in
        32) return 0 ;;
        64|65|66) head -c 64 "$1" | grep -Eqx '[0-9a-fA-F]{64}' ;;
        44|45|46) head -c 44 "$1" | grep -Eqx '[A-Za-z0-9+/]{43}=' ;;
        *) return 1 ;;
    esac
}

key_right() {
    owned_by_user "$KEY_PATH" && [ "$(stat -c %a "$(R "$KEY_PATH")")" = 600 ]
}

step_key() {
    local dest configured
    dest=$(R "$KEY_PATH")
    configured=$(toml_get "$(config_file)" uplink.key_file)
    [ -z "$configured" ] || [ "$configured" = "$KEY_PATH" ] \
        || say "the configuration reads its key from $configured, not $KEY_PATH: install it there yourself"
    if [ -n "$KEY_FILE" ]; then
        key_form_ok "$KEY_FILE" || die "$KEY_FILE holds no flight key as keygen writes one (stratoecho-flight-key-v1:...); make one with python -m groundstation keygen FILE and give the ground the same file (a bare key made before: uplink.allow_raw_key = true, docs/protocol.md 'Key files')"
        if [ ! -e "$dest" ]; then
            run install -m 600 "$KEY_FILE" "$dest"
        elif ! cmp -s "$KEY_FILE" "$dest"; then
            die "another flight key is at $KEY_PATH, and the ground may hold it; it is never replaced. To fly a new key, remove the old one (rm $KEY_PATH) deliberately and run again"
        else
            say "this flight key is at $KEY_PATH already"
        fi
    elif [ -e "$dest" ]; then
        say "a flight key is at $KEY_PATH"
    else
        say "no flight key at $KEY_PATH: the payload flies without one, sending positions, musing sentences and pictures only; pass --key FILE (python -m groundstation keygen FILE, given to the ground too). None is made here"
        return 0
    fi
    owned_by_user "$KEY_PATH" || own "$KEY_PATH"
    [ "$(stat -c %a "$dest" 2>/dev/null)" = 600 ] || run chmod 600 "$dest"
    check "$KEY_PATH is $USER_NAME's, mode 600" "docs/deploy.md step 6" key_right
    if payload_installed; then
        check_in_root "the payload, as $USER_NAME, accepts the key" "the reason is above; make a good key with keygen" \
            runuser -u "$USER_NAME" -- "$VENV/bin/python" -c "from stratoecho.wire.uplink_keys import load_key; load_key('$KEY_PATH', allow_raw='$(toml_get "$(config_file)" uplink.allow_raw_key)' == 'true')"
    fi
}

# --- §8: the systemd unit -------------------------------------------------------------------------

unit_wanted_by() {  # the target a unit's [Install] WantedBy= names
    sed -n 's/^WantedBy=//p' "$1" | head -n 1
}

units_right() {
    local u src
    for u in $UNITS; do
        src="$(R "$PROJECT")/systemd/$u"
        cmp -s "$src" "$(R /etc/systemd/system)/$u" || return 1
        [ -L "$(R /etc/systemd/system)/$(unit_wanted_by "$src").wants/$u" ] || return 1
    done
}

step_units() {
    local u src reload=0
    [ -d "$(R /etc/systemd/system)" ] || run mkdir -p "$(R /etc/systemd/system)"
    for u in $UNITS; do
        src="$(R "$PROJECT")/systemd/$u"
        if cmp -s "$src" "$(R /etc/systemd/system)/$u"; then
            say "$u is installed, as in the project"
        else
            run install -m 644 "$src" "$(R /etc/systemd/system)/$u"
            reload=1
        fi
    done
    [ "$reload" = 0 ] || [ "$ROOT" != / ] || run systemctl daemon-reload
    for u in $UNITS; do
        src="$(R "$PROJECT")/systemd/$u"
        if [ -L "$(R /etc/systemd/system)/$(unit_wanted_by "$src" 2>/dev/null).wants/$u" ]; then
            say "$u is enabled"
        elif [ "$ROOT" = / ]; then
            run systemctl enable "$u"
        else
            run systemctl --root="$ROOT" enable "$u"
        fi
    done
    check "the units are the project's and enabled: $UNITS" "docs/deploy.md step 8" units_right
    [ "$START" = 1 ] || { say "not started (--start starts it; or at the next boot)"; return 0; }
    [ "$ROOT" = / ] || { die "--start needs the running system, not --root"; return 0; }
    for u in $UNITS; do
        systemctl is-active -q "$u" || run systemctl start "$u"
        check "$u is running" "journalctl -u ${u%.service} -b says why (docs/deploy.md step 9)" systemctl is-active -q "$u"
    done
}

# --- §7: the hardware watchdog ------------------------------------------------------------------

step_watchdog() {
    local conf value
    conf=$(R "$WATCHDOG_CONF")
    value=$(sed -n 's/^RuntimeWatchdogSec=//p' "$conf" 2>/dev/null | tail -n 1)
    if [ -n "$value" ]; then
        say "$WATCHDOG_CONF sets RuntimeWatchdogSec=$value; kept"
    else
        [ -d "${conf%/*}" ] || run mkdir -p "${conf%/*}"
        write_lines "$conf" "[Manager]" "RuntimeWatchdogSec=$WATCHDOG_SEC"
        say "systemd feeds $WATCHDOG_DEVICE from the next boot; then: journalctl -b | grep -i watchdog, wdctl (docs/deploy.md step 7)"
    fi
    check "$WATCHDOG_CONF sets RuntimeWatchdogSec" "docs/deploy.md step 7" grep -q '^RuntimeWatchdogSec=' "$conf"
    [ "$ROOT" = / ] || return 0
    check "the hardware watchdog $WATCHDOG_DEVICE exists" \
        "add dtparam=watchdog=on to /boot/firmware/config.txt and reboot (docs/deploy.md step 7)" test -c "$WATCHDOG_DEVICE"
}

# --- §10: read-only root (only with --read-only-root, last) -------------------------------------

overlay_enabled() {
    [ "$(raspi-config nonint get_overlay_conf 2>/dev/null)" = 0 ]
}

step_readonly() {
    local conf
    conf=$(R "$JOURNALD_CONF")
    [ -n "$(fstab_entry)" ] || die "/etc/fstab does not mount the data partition: under the overlay root every write would be lost at the next boot (step data, docs/deploy.md step 2)"
    if grep -qx 'Storage=volatile' "$conf" 2>/dev/null; then
        say "$JOURNALD_CONF keeps the journal in RAM already"
    else
        [ -d "${conf%/*}" ] || run mkdir -p "${conf%/*}"
        write_lines "$conf" "[Journal]" "Storage=volatile" "RuntimeMaxUse=16M"
    fi
    check "$JOURNALD_CONF keeps the journal in RAM" "docs/deploy.md step 10" grep -qx 'Storage=volatile' "$conf"
    if [ "$ROOT" != / ]; then
        say "the overlay root is switched on on the Pi itself: raspi-config nonint do_overlayfs 0, then reboot (docs/deploy.md step 10)"
        return 0
    fi
    command -v raspi-config >/dev/null || die "no raspi-config: the overlay root is Raspberry Pi OS's (docs/deploy.md step 10)"
    if [ "$DRY" = 0 ] && overlay_enabled; then
        say "the overlay root is on already"
    else
        run raspi-config nonint do_overlayfs 0
    fi
    check "the overlay root is on from the next boot" "docs/deploy.md step 10" overlay_enabled
    say "reboot to make the root read-only; to change anything later: raspi-config nonint do_overlayfs 1, reboot"
}

# --- in order ---------------------------------------------------------------------------------------

run_steps() {
    wanted packages && step packages "the apt packages (docs/deploy.md step 5)"
    wanted data && step data "the data partition's mount at $DATA_DIR (step 2)"
    wanted user && step user "the $USER_NAME user and its groups (step 3)"
    wanted project && step project "the project at $PROJECT (step 5)"
    wanted venv && step venv "its venv, with the system's site packages (step 5)"
    wanted llama && step llama "llama-cpp-python for this board (step 5)"
    wanted payload && step payload "the payload package (step 5)"
    wanted config && step config "the configuration $CONFIG (step 6)"
    wanted persona && step persona "the persona bundle (step 6)"
    wanted key && step key "the flight key $KEY_PATH (step 6)"
    wanted watchdog && step watchdog "the hardware watchdog (step 7)"
    wanted units && step units "the systemd unit (step 8)"
    if [ "$READ_ONLY" = 1 ]; then
        wanted readonly && step readonly "the read-only root (step 10, last)"
    elif wanted readonly; then
        printf '\n== readonly: left out (--read-only-root does it, last, once everything else works)\n'
    fi
    return 0
}
