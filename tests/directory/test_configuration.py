"""WVD_LDAP_*: unset, no directory sign-in at all; set, the directory backend and its sync task; malformed,
one clear line naming the variable."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.environment import env_directory
from tests.settings.test_environment import clean_env  # noqa: F401 - the fixture ldap_env builds on
from wvdportal.celery import app

pytest.importorskip("ldap", reason="python-ldap is not installed (requirements-directory.txt needs libldap2-dev)")

ROOT = Path(__file__).resolve().parents[2]
COMPLETE = {
    "WVD_LDAP_URI": "ldap://ldap.example.org ldaps://ldap2.example.org:636",
    "WVD_LDAP_BIND_DN": "cn=reader,dc=example,dc=org",
    "WVD_LDAP_BIND_PASSWORD": " secret with spaces ",
    "WVD_LDAP_USER_SEARCH": "ou=people,dc=example,dc=org",
    "WVD_LDAP_GROUP_SEARCH": "ou=groups,dc=example,dc=org",
}


@pytest.fixture
def ldap_env(clean_env):
    """No WVD_* variable from the environment running the tests (tests/settings' fixture)."""
    return clean_env


def with_env(monkeypatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_unset_means_no_directory(ldap_env):
    assert env_directory() is None


def test_a_complete_configuration_is_read_with_its_defaults(ldap_env):
    with_env(ldap_env, {**COMPLETE, "WVD_LDAP_STAFF_GROUP": "cn=helpdesk,ou=groups,dc=example,dc=org"})

    assert env_directory() == {
        "URI": "ldap://ldap.example.org ldaps://ldap2.example.org:636",
        "BIND_DN": "cn=reader,dc=example,dc=org",
        "BIND_PASSWORD": " secret with spaces ",  # a password is taken as it is
        "USER_SEARCH": "ou=people,dc=example,dc=org",
        "GROUP_SEARCH": "ou=groups,dc=example,dc=org",
        "STAFF_GROUP": "cn=helpdesk,ou=groups,dc=example,dc=org",
        "TIMEOUT": 5, "SYNC_MINUTES": 15, "SYNC_BATCH": 500,
    }


def test_an_anonymous_bind_needs_neither_dn_nor_password(ldap_env):
    with_env(ldap_env, {**COMPLETE, "WVD_LDAP_BIND_DN": "", "WVD_LDAP_BIND_PASSWORD": ""})

    assert env_directory()["BIND_DN"] == ""


@pytest.mark.parametrize(("values", "message"), [
    ({"WVD_LDAP_USER_SEARCH": "ou=people,dc=example,dc=org"}, "WVD_LDAP_USER_SEARCH set without WVD_LDAP_URI"),
    ({**COMPLETE, "WVD_LDAP_URI": "http://ldap.example.org"}, "WVD_LDAP_URI: 'http://ldap.example.org' must be"),
    ({**COMPLETE, "WVD_LDAP_URI": "ldap://ldap.example.org:notaport"}, "has an invalid port"),
    ({**COMPLETE, "WVD_LDAP_URI": "ldap:///dc=example"}, "must be ldap://host"),
    ({**COMPLETE, "WVD_LDAP_USER_SEARCH": ""}, "WVD_LDAP_USER_SEARCH is required"),
    ({**COMPLETE, "WVD_LDAP_GROUP_SEARCH": "people"}, "WVD_LDAP_GROUP_SEARCH='people' is not a distinguished name"),
    ({**COMPLETE, "WVD_LDAP_STAFF_GROUP": "helpdesk"}, "WVD_LDAP_STAFF_GROUP='helpdesk' is not a distinguished"),
    ({**COMPLETE, "WVD_LDAP_BIND_PASSWORD": ""}, "WVD_LDAP_BIND_DN is set but WVD_LDAP_BIND_PASSWORD is empty"),
    ({**COMPLETE, "WVD_LDAP_TIMEOUT": "0"}, "WVD_LDAP_TIMEOUT=0 is below the minimum 1"),
])
def test_a_malformed_configuration_is_refused_naming_the_variable(ldap_env, values, message):
    with_env(ldap_env, values)

    with pytest.raises(ImproperlyConfigured, match=message.replace("(", r"\(").replace("?", r"\?")):
        env_directory()


def settings_with(env_overrides: dict[str, str], tmp_path: Path) -> dict:
    """The settings a fresh process reads from these variables (settings.py runs at import)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WVD_")}
    env.update({"WVD_DATA_DIR": str(tmp_path / "data"), "DJANGO_SETTINGS_MODULE": "wvdportal.settings"},
               **env_overrides)
    code = ("import json; from django.conf import settings as s; print(json.dumps({'backends': "
            "s.AUTHENTICATION_BACKENDS, 'beat': {k: v['task'] for k, v in s.CELERY_BEAT_SCHEDULE.items()}}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_directory_backend_and_its_sync_are_installed_only_when_configured(tmp_path):
    without = settings_with({}, tmp_path)
    configured = settings_with({**COMPLETE, "WVD_LDAP_SYNC_MINUTES": "5"}, tmp_path)

    assert "core.ldapdirectory.DirectoryBackend" not in without["backends"]
    assert "core.tasks.sync_directory_users" not in without["beat"].values()
    # After ModelBackend: a local account signs in without waiting on the directory.
    assert configured["backends"][-2:] == ["django.contrib.auth.backends.ModelBackend",
                                           "core.ldapdirectory.DirectoryBackend"]
    assert configured["beat"]["core-sync-directory-users"] == "core.tasks.sync_directory_users"


def test_the_sync_task_is_registered_under_its_beat_name():
    app.loader.import_default_modules()  # as a worker (or `serve`'s in-process beat) does at start

    assert "core.tasks.sync_directory_users" in app.tasks
