# Set-up is a stamp file: the venv is rebuilt only when pyproject.toml changes.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "needs $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first: a bare `torch` requirement would otherwise pull a multi-GB CUDA build
	$(PY) -m pip install --disable-pip-version-check -q torch==2.13.0
	$(PY) -m pip install --disable-pip-version-check -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo:
	@t0=$$(date +%s); $(MAKE) --no-print-directory setup; echo "[make] set-up: $$(( $$(date +%s) - t0 )) s"
	$(VENV)/bin/rlhf demo --run runs/demo

test: setup
	$(PY) -m pytest

clean:
	rm -rf $(VENV) runs *.egg-info
