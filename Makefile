# Two commands matter: `make demo` and `make test`. Everything else is a stage of `make test`.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: demo test lint pytest molecule molecule-arm64 images bench venv

$(VENV)/.stamp: requirements-dev.txt app/requirements.txt app/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt -e app
	touch $@

venv: $(VENV)/.stamp

## demo: run the streamer on a synthetic test pattern at http://127.0.0.1:8080/
demo: venv
	$(VENV)/bin/snapshot-stream --source synthetic --host 127.0.0.1 --port 8080

## test: every check: lint, the app's tests, the Molecule scenarios
test: venv
	@scripts/stage lint $(MAKE) --no-print-directory lint
	@scripts/stage pytest $(MAKE) --no-print-directory pytest
	@scripts/stage molecule $(MAKE) --no-print-directory molecule

lint: venv
	ruff check app bench tests molecule roles
	ruff format --check app bench tests molecule roles
	yamllint -s .
	shellcheck .ci/run scripts/* roles/snapshot_stream/files/snapshot-stream-tailnet
	ansible-lint --profile production
	ansible-playbook --syntax-check -i inventory.example playbook.yml

pytest: venv
	cd app && ../$(PY) -m pytest -q
	$(PY) -m pytest -q tests

images:
	scripts/build-images

molecule: venv images
	scripts/molecule-all

## molecule-arm64: the playbook on an emulated arm64 Pi (~14 min with the image; not part of `make test`)
molecule-arm64: venv
	scripts/build-images --arch arm64
	scripts/molecule-all arm64

bench: venv
	$(PY) bench/bench.py
