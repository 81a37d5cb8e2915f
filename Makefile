# Two entry points, each doing its own set-up on a fresh machine:
#   make demo   runs the main job offline on the embedded defaults
#   make test   runs the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo demo-picture test bench lint

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned to the build this machine (and CI) serves from local disk
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[test]'
	# invisible-watermark pulls in opencv-python, which needs the system's libGL: install it where it is missing
	$(BIN)/python -c 'import cv2' 2>/dev/null || (apt-get update -q && apt-get install -y -q libgl1 libglib2.0-0)
	# the storage tests start a real PostgreSQL server (tests/pg_server.py): install it where it is missing
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		(apt-get update -q && apt-get install -y -q postgresql)
	touch $(STAMP)

demo: setup
	HF_HUB_OFFLINE=1 $(BIN)/dreambot demo --out demo-out

# the README's picture: the demo's overview of its pictures, copied where the README shows it
demo-picture: demo
	mkdir -p docs && cp demo-out/demo.png docs/demo.png

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m bench.queue

lint: setup
	$(BIN)/ruff check .
