# Two commands on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test venv

venv: $(STAMP)

# Directory sign-in's python-ldap builds against OpenLDAP's headers: installed where they are, skipped with a
# line where they are not (so `make run` needs nothing beyond Python), and required with WVD_REQUIRE_DIRECTORY=1
# (CI, which installs the headers first).
$(STAMP): requirements.txt requirements-directory.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	if [ -f /usr/include/ldap.h ] && [ -f /usr/include/sasl/sasl.h ]; then \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-directory.txt; \
	elif [ "$${WVD_REQUIRE_DIRECTORY:-}" = 1 ]; then \
	  echo "WVD_REQUIRE_DIRECTORY=1 but OpenLDAP's headers are missing: apt-get install libldap2-dev libsasl2-dev" >&2; exit 1; \
	else \
	  echo "note: directory sign-in (WVD_LDAP_*) not installed: apt-get install libldap2-dev libsasl2-dev, then make venv"; \
	fi
	touch $(STAMP)

run: venv
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py initca
	$(BIN)/python manage.py initadmin
	$(BIN)/python manage.py serve

# The layers first (.importlinter, docs/architecture.md), then the suite. Tests keep their own data dir so
# they never touch the one `make run` uses.
test: venv
	$(BIN)/lint-imports --no-cache
	WVD_DATA_DIR=$${WVD_DATA_DIR:-$(CURDIR)/data/test} $(BIN)/python -m pytest $(PYTEST_ARGS)
