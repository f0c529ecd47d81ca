# Two entry points on a fresh machine:  `make demo`  and  `make test`.
# Set-up creates .venv/ and installs the CPU build of torch 2.13.0 first: an unpinned torch would pull a
# multi-GB CUDA build. On a GPU machine, install your CUDA torch into .venv first; `make` keeps it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: setup demo test lint bench clean browser shapesworld-model

$(BIN)/.dptune-installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

setup: $(BIN)/.dptune-installed

demo: setup
	$(BIN)/dptune demo --out-dir runs/demo

# Retrain the shipped tiny SD from scratch with its recipe (models/shapesworld-sd/README.md): a frozen text
# encoder pretrained CLIP-style, then the U-Net on it. 75 minutes on 2 idle cores (2026-12-05); both steps resume.
# Writes runs/shapesworld-sd (the shipped folder is left alone; its VAE is reused, it is text-independent).
SW_UNET_STEPS ?= 19110
shapesworld-model: setup
	$(BIN)/dptune shapesworld pretrain-text --out runs/shapesworld-text --steps 4000 --tag-weight 1
	$(BIN)/dptune shapesworld train-base --out runs/shapesworld-sd --paraphrases \
		--init-text-encoder runs/shapesworld-text --freeze-text-encoder --init-vae models/shapesworld-sd \
		--vae-steps 0 --max-unet-steps $(SW_UNET_STEPS) --max-minutes 90

lint: setup
	$(BIN)/ruff check src tests benchmarks experiments

# the browser test (tests/test_app_browser.py) drives `dptune app` in headless Chromium: Debian's packages
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)

test: lint browser
	$(BIN)/python -m pytest -q

# Every benchmarks/*.py in full mode; stdout gets one JSON line per benchmark (names go to stderr).
# Each also takes --quick (a smoke run; tests/test_benchmarks_quick.py runs them that way).
bench: setup
	@for f in benchmarks/*.py; do echo "== $$f" >&2; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
