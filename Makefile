# Two commands matter: `make run` (dashboard on the demo model) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed
PORT ?= 8501

.PHONY: run test bench lint system clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(RUNTIME): requirements.txt pyproject.toml | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

$(DEV): $(RUNTIME) requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# Debian packages the end-to-end tests use: Chromium (browser test), poppler (PDF to PNG), and
# Orthanc with its DICOMweb plugin (a real PACS) and dicom3tools (dciodvfy) for the DICOM exports.
system:
	@if ! command -v chromium >/dev/null || ! command -v pdftoppm >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium poppler-utils fonts-dejavu-core >/dev/null; \
	  else echo "Install chromium and poppler-utils (sudo apt-get install chromium poppler-utils)"; exit 1; fi; \
	fi
	@if ! command -v Orthanc >/dev/null || ! command -v dciodvfy >/dev/null \
	    || [ ! -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb dicom3tools >/dev/null; \
	  else echo "Install orthanc, orthanc-dicomweb and dicom3tools (sudo apt-get install orthanc orthanc-dicomweb dicom3tools)"; exit 1; fi; \
	fi
	@# The records suite starts its own PostgreSQL server (initdb, pg_ctl) on 127.0.0.1.
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "Install PostgreSQL (sudo apt-get install postgresql)"; exit 1; fi; \
	fi

# `python -m dashboard` warms the app (modules, model, demo patients), then serves it as `streamlit run`.
run: $(RUNTIME)
	$(PY) -m dashboard --server.port $(PORT)

# The tests run after the lint: a change that breaks the rules or the types fails `make test` too.
test: lint system
	$(PY) -m pytest

bench: $(DEV)
	$(PY) benchmarks/bench_gradcam.py

lint: $(DEV)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) .pytest_cache
