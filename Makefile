# dify-volume-init: everything a newcomer needs is `make run` and `make test`.
# Both create .venv when it is missing and install the project into it.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# `run` installs what serving needs; `test` adds the test toolchain.
RUN_STAMP  := $(VENV)/.installed-run
STAMP      := $(VENV)/.installed-test
PIP        := $(BIN)/python -m pip --quiet --disable-pip-version-check

.PHONY: run test lint typecheck unit system-packages control-plane clean

run: $(RUN_STAMP)
	$(BIN)/dify-volume-init serve

test: $(STAMP) system-packages control-plane lint typecheck unit

$(RUN_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(PIP) install -e '.[test]'
	touch $(STAMP)

# The init script's tests run busybox under setpriv in a private mount namespace,
# mark files immutable (chattr), fill a small ext4 image on a loop device and
# serve a directory through FUSE (libfuse2, for fusepy); the certificate tests
# judge what `certs` leaves with `openssl verify`.
system-packages:
	@missing=""; \
	command -v busybox >/dev/null || missing="$$missing busybox"; \
	command -v setpriv >/dev/null || missing="$$missing util-linux"; \
	command -v unshare >/dev/null || missing="$$missing util-linux"; \
	command -v losetup >/dev/null || missing="$$missing mount"; \
	command -v chattr >/dev/null || missing="$$missing e2fsprogs"; \
	command -v mkfs.ext4 >/dev/null || missing="$$missing e2fsprogs"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	ldconfig -p | grep -q 'libfuse\.so\.2 ' || missing="$$missing libfuse2"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  echo "installing:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# kube-apiserver, kube-controller-manager and etcd for tests/test_cluster.py, built
# from the Go module proxy once into ~/.cache/dify-volume-init (tests/cluster/build.sh).
control-plane:
	@command -v go >/dev/null || { echo "Go 1.26 is needed to build the test control plane"; exit 1; }
	@tests/cluster/build.sh >/dev/null

lint: $(STAMP)
	$(BIN)/ruff check webhook tests bench
	$(BIN)/ruff format --check webhook tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
