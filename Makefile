# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run start stop status lint test bench install clean browser

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

## Set up everything and run web + worker + beat in the foreground (Ctrl-C stops all).
run: $(STAMP)
	$(BIN)/python -m devservices.run

## The same, in the background; `make stop` ends it.
start: $(STAMP)
	$(BIN)/python -m devservices.run --background

stop:
	$(BIN)/python -m devservices.run --stop

status:
	$(BIN)/python -m devservices status

## Debian tools the tests drive (needs root or sudo): headless Chromium, its driver and CJK fonts for the
## browser tests, and docker-compose, whose own parser checks compose.yaml (no Docker daemon needed).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && dpkg -s fonts-noto-cjk >/dev/null 2>&1 \
	  && command -v docker-compose >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -qq chromium chromium-driver fonts-noto-cjk docker-compose >/dev/null; }

## Lint (ruff.toml): no findings allowed.
lint: $(STAMP)
	$(BIN)/ruff check .

## Install what is missing, lint, and run the whole test suite against real services.
test: $(STAMP) browser lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench all --update-readme

clean: stop
	rm -rf var
