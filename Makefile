# Two commands matter: `make demo` and `make test`. Everything else is a stage of `make test`.
SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: demo test setup lint pytest molecule images bench venv

$(VENV)/.stamp: requirements-dev.txt app/requirements.txt app/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt -e app
	touch $@

venv: $(VENV)/.stamp

## demo: run the streamer on a synthetic test pattern at http://127.0.0.1:8080/
demo: venv
	$(VENV)/bin/snapshot-stream --source synthetic --host 127.0.0.1 --port 8080

## test: every check: set-up of the machine, lint, the app's tests, the Molecule scenarios (as root)
# (scripts/test-stages: lint, pytest and molecule, with the Molecule images built meanwhile)
test: setup
	@$(MAKE) --no-print-directory venv
	@scripts/test-stages

# The Molecule stage needs root (debootstrap, Docker): `make test` prepares the machine itself with
# scripts/ci-setup (idempotent; what CI runs), and, run by anyone else, stops before doing anything
# with one line that names the command to run.
ifneq ($(filter test,$(MAKECMDGOALS)),)
ifneq ($(shell id -u),0)
$(error make test needs root to set up Docker, debootstrap and qemu (scripts/ci-setup); run: sudo make test)
endif
endif

setup:
	@scripts/stage setup scripts/ci-setup

# The shell scripts of scripts/ (host-check is Python, host-packages.txt a list).
SHELL_SCRIPTS = $(shell grep -l '^\#!/usr/bin/env bash' scripts/*)

lint: venv
	ruff check app bench tests molecule roles scripts/host-check
	ruff format --check app bench tests molecule roles scripts/host-check
	yamllint -s .
	shellcheck .ci/run $(SHELL_SCRIPTS) roles/snapshot_stream/files/snapshot-stream-tailnet
	ansible-lint --profile production
	ansible-playbook --syntax-check -i inventory.example playbook.yml

pytest: venv
	cd app && ../$(PY) -m pytest -q
	$(PY) -m pytest -q tests

# Every image of the Molecule scenarios (scripts/molecule-all also builds each scenario's own).
images:
	scripts/build-images --jobs 2 bookworm-amd64 trixie-amd64 bookworm-arm64 bookworm-armhf

# Scenarios: default fleet trixie apt arm64 armhf (MOLECULE_SCENARIOS="..." or scripts/molecule-all NAME)
molecule: venv
	scripts/molecule-all

bench: venv
	$(PY) bench/bench.py
