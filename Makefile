# The two commands: `make demo` and `make test`. Each installs everything it
# needs into .venv (pinned by requirements.lock) on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

$(STAMP): setup.py requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/shoprec demo $(ARGS)

test: $(STAMP)
	$(PY) -m pytest tests -q $(ARGS)

clean:
	rm -rf runs .pytest_cache
