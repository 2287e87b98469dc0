# The README's commands. `make run`, `make test` and `make bench` work on a
# fresh clone: each creates the virtual environment first when it is missing
# or stale.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test test-systemd test-packages deb lint check bench venv clean

run: $(INSTALLED)
	scripts/run-local

test: $(INSTALLED)
	$(BIN)/python -m pytest

# Boots Debian root file systems with systemd as PID 1 (systemd-nspawn):
# jibril.service from the package, and the package's install, upgrade,
# removal and purge; needs root. The debootstrap result is cached in
# SYSTEMD_CACHE.
SYSTEMD_CACHE ?= $(CURDIR)/.cache/systemd

test-systemd: deb
	tests/systemd/build-rootfs $(SYSTEMD_CACHE) $(DEB_FILE)
	JIBRIL_SYSTEMD_CACHE=$(SYSTEMD_CACHE) JIBRIL_DEB=$(DEB_FILE) \
		$(BIN)/python -m pytest tests/systemd

# The Debian package: DEB_DIR/jibril_DEB_VERSION_ARCH.deb.
DEB_DIR ?= $(CURDIR)/dist
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
DEB_VERSION ?= $(VERSION)-1
DEB_FILE = $(DEB_DIR)/jibril_$(DEB_VERSION)_$(shell dpkg --print-architecture).deb

deb: $(INSTALLED)
	PYTHON=$(CURDIR)/$(BIN)/python DEB_CACHE=$(CURDIR)/.cache/deb DEB_VERSION=$(DEB_VERSION) \
		packaging/deb/build $(DEB_DIR)

# The container image, built from its Dockerfile, and the Helm chart,
# rendered with a real helm that fetch-helm downloads into HELM_CACHE once.
# Needs root, and network to Debian's mirror to build the image's rootfs,
# cached in .cache/docker.
HELM_CACHE ?= $(CURDIR)/.cache/helm

test-packages: deb
	@command -v debootstrap >/dev/null || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap; }
	helm=$$($(BIN)/python packaging/helm/fetch-helm $(HELM_CACHE)) && \
		JIBRIL_HELM=$$helm $(BIN)/python -m pytest tests/packaging

# A few minutes on two cores; not part of `make test`. Writes bench/results.json.
bench: $(INSTALLED)
	$(BIN)/python -m bench

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint --failure-threshold style packaging/docker/Dockerfile

check: lint test

venv: $(INSTALLED)

# Reinstalled whenever pyproject.toml changes.
$(INSTALLED): pyproject.toml
	@command -v $(PYTHON) >/dev/null || \
		{ echo "$(PYTHON) not found; install Python 3.11 or newer (Debian: apt-get install python3 python3-venv)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "jibrild needs Python 3.11 or newer; set PYTHON=python3.11"; exit 1; }
	@# A venv made without pip (no python3-venv on Debian) is made again.
	$(BIN)/python -m pip --version >/dev/null 2>&1 || \
		{ rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) .run .cache dist .pytest_cache .mypy_cache .ruff_cache *.egg-info
