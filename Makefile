# Set-up is a stamp file: the venv is rebuilt only when pyproject.toml or requirements.lock changes.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean lock

# requirements.lock pins every package to the version the test suite passed on; pyproject.toml
# keeps the ranges. torch comes first and on its own: a bare `torch` requirement would pull a
# multi-GB CUDA build, and the lock's `torch==X` is then already satisfied by the CPU wheel.
TORCH := 2.13.0
# Where `make lock` finds torch's CPU wheel: a folder, or a find-links page such as PyTorch's CPU
# wheel index. /opt/wheels is this project's build machines'.
TORCH_WHEELS ?= /opt/wheels
PIP := $(PY) -m pip install --disable-pip-version-check -q

$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "needs $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==$(TORCH)
	$(PIP) -r requirements.lock
	$(PIP) --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo:
	@t0=$$(date +%s); $(MAKE) --no-print-directory setup; echo "[make] set-up: $$(( $$(date +%s) - t0 )) s"
	$(VENV)/bin/rlhf demo --run runs/demo

# Re-resolve every dependency to the newest versions that pyproject.toml allows, then run
# `make test` before committing the new lock. `make lock UPGRADE=` keeps every existing pin and
# only adds what pyproject.toml newly declares.
UPGRADE ?= --upgrade
lock:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) uv==0.13.9
	printf 'torch==$(TORCH)+cpu\n' > $(VENV)/torch-cpu.txt
	$(VENV)/bin/uv pip compile pyproject.toml --extra test --extra postgres --python-version 3.11 $(UPGRADE) \
		--find-links $(TORCH_WHEELS) --constraint $(VENV)/torch-cpu.txt \
		--custom-compile-command 'make lock' --output-file requirements.lock
	sed -i 's/^torch==\(.*\)+cpu$$/torch==\1/' requirements.lock

test: setup
	$(PY) -m pytest

clean:
	rm -rf $(VENV) runs *.egg-info
