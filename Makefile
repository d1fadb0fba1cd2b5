# Lightbox. `make run` starts everything on embedded defaults; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
# Local models to serve besides the tiny ones, e.g. LIGHTBOX_LOCAL_MODELS="sd-turbo sdxl-turbo tiny-sd*3"
LIGHTBOX_LOCAL_MODELS ?=
export LIGHTBOX_LOCAL_MODELS
EXTRAS ?= inference,dev

.PHONY: run test lint install browser secret-key migrate procfile schema schema-train tiny-models bench-gpu bench-gpu-tiny bench-gpu-train bench-gpu-train-tiny clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch comes first and pinned: a bare "torch" requirement would pull a multi-GB CUDA build.
$(VENV)/.installed-$(EXTRAS): pyproject.toml | $(BIN)/python
	case ",$(EXTRAS)," in *,inference,*) $(BIN)/pip install -q torch==2.13.0 ;; esac
	$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed-$(EXTRAS) node_modules/.package-lock.json

# axe-core, for the browser tests' accessibility checks.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --silent --no-audit --no-fund

# The browser tests drive Debian's Chromium (Playwright's own download cannot run here).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| echo "Install Chromium (apt-get install chromium) to run the browser tests."

# The SECRET_KEY of `make run` when the environment sets none: random, made once
# in var/secret_key (0600) and reused. Nothing else makes it: a deployment
# without a key refuses to start (README: Secret key and rotation).
secret-key: install
	LIGHTBOX_SECRET_KEY_CREATE=1 $(BIN)/python -c "import lightbox.settings"

migrate: secret-key
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py collectstatic --noinput -v0

tiny-models: install
	test -f var/models/tiny-sd/model_index.json || $(BIN)/python -m inference.tiny var/models

# Every process of `make run`: the Procfile plus the Cog servers of LIGHTBOX_LOCAL_MODELS
# ("sd-turbo": one server; "tiny-sd*3": a pool of three).
procfile: secret-key
	mkdir -p var
	cp Procfile var/Procfile
	$(BIN)/python manage.py local_procfile >> var/Procfile

# The web process loads the catalog once the local model servers answer
# (Procfile), so the first page or API call after start runs a local model.
run: migrate tiny-models procfile
	PATH="$(CURDIR)/$(BIN):$$PATH" LIGHTBOX_PORT=$(PORT) SITE_URL=$${SITE_URL:-http://127.0.0.1:$(PORT)} \
		$(BIN)/honcho start -f var/Procfile -d .

# The local server's input schema, for `cog build` (each server writes its own family's at start).
schema: install
	$(BIN)/python -m inference.schema .cog/openapi_schema.json

# The trainer's schema (cog build writes one schema; a trainer image is built with this one).
schema-train: install
	$(BIN)/python -m inference.schema --train .cog/openapi_schema.json

# On a GPU machine (see bench/README-gpu.md); bench-gpu-tiny runs the same code on a CPU.
bench-gpu:
	$(BIN)/python bench/gpu_predictor.py --compile sd-turbo-4,sdxl-30

bench-gpu-tiny: install
	$(BIN)/python bench/gpu_predictor.py --tiny --runs 1

# Issue 13's GPU figures in one run under ten minutes: LoRA training steps/s (ours and
# diffusers' example) and issue 3's two SD-Turbo figures; -tiny checks it on a CPU.
bench-gpu-train:
	$(BIN)/python bench/gpu_train.py --json var/bench/gpu_train.jsonl

bench-gpu-train-tiny: install
	$(BIN)/python bench/gpu_train.py --tiny

# ruff (lint and format) and import-linter (the layers of docs/architecture.md) before the suite.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

test: install browser lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf var staticfiles
