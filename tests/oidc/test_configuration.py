"""WVD_OIDC_*: unset, no OIDC sign-in at all (no backend, no button, no URLs); set, read with its defaults;
malformed, one clear line naming the variable."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.environment import env_oidc
from tests.settings.test_environment import clean_env  # noqa: F401 - the fixture oidc_env builds on

ROOT = Path(__file__).resolve().parents[2]
COMPLETE = {
    "WVD_OIDC_ISSUER": "https://id.example.org/realms/staff",
    "WVD_OIDC_CLIENT_ID": "wvd",
    "WVD_OIDC_CLIENT_SECRET": " secret with spaces ",
}


@pytest.fixture
def oidc_env(clean_env):
    return clean_env


def with_env(monkeypatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_unset_means_no_oidc(oidc_env):
    assert env_oidc() is None


def test_a_complete_configuration_is_read_with_its_defaults(oidc_env):
    with_env(oidc_env, COMPLETE)

    assert env_oidc() == {
        "ISSUER": "https://id.example.org/realms/staff",
        "CLIENT_ID": "wvd",
        "CLIENT_SECRET": " secret with spaces ",  # a secret is taken as it is
        "GROUPS_CLAIM": "groups",
        "SCOPES": "openid email profile",
        "PROVIDER_NAME": "id.example.org",
        "CA_FILE": "",
        "TIMEOUT": 5,
    }


def test_the_optional_variables_are_read(oidc_env, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    with_env(oidc_env, {**COMPLETE, "WVD_OIDC_GROUPS_CLAIM": "roles", "WVD_OIDC_PROVIDER_NAME": "Contoso ID",
                        "WVD_OIDC_SCOPES": "openid  profile groups", "WVD_OIDC_CA_FILE": str(ca),
                        "WVD_OIDC_TIMEOUT": "10"})

    config = env_oidc()

    assert (config["GROUPS_CLAIM"], config["PROVIDER_NAME"], config["SCOPES"], config["CA_FILE"], config["TIMEOUT"]) \
        == ("roles", "Contoso ID", "openid profile groups", str(ca), 10)


@pytest.mark.parametrize(("name", "value"), [
    ("WVD_OIDC_ISSUER", "http://id.example.org"),
    ("WVD_OIDC_ISSUER", "id.example.org"),
    ("WVD_OIDC_ISSUER", "https://id.example.org/?realm=staff"),
    ("WVD_OIDC_ISSUER", "https://id.example.org:99999"),
    ("WVD_OIDC_ISSUER", "https://user:pw@id.example.org"),
    ("WVD_OIDC_CLIENT_ID", ""),
    ("WVD_OIDC_CLIENT_SECRET", "  "),
    ("WVD_OIDC_GROUPS_CLAIM", "my groups"),
    ("WVD_OIDC_SCOPES", "email profile"),
    ("WVD_OIDC_CA_FILE", "/nonexistent/ca.pem"),
    ("WVD_OIDC_TIMEOUT", "0"),
])
def test_a_malformed_value_is_refused_naming_the_variable(oidc_env, name, value):
    with_env(oidc_env, {**COMPLETE, name: value})

    with pytest.raises(ImproperlyConfigured, match=name):
        env_oidc()


def test_the_other_variables_without_the_issuer_are_refused(oidc_env):
    with_env(oidc_env, {"WVD_OIDC_CLIENT_ID": "wvd", "WVD_OIDC_GROUPS_CLAIM": "roles"})

    with pytest.raises(ImproperlyConfigured, match="WVD_OIDC_CLIENT_ID, WVD_OIDC_GROUPS_CLAIM set without WVD_OIDC_ISSUER"):
        env_oidc()


def settings_in_a_fresh_process(env: dict[str, str], tmp_path: Path) -> dict:
    code = ("import django, json; django.setup(); from django.conf import settings; from django.urls import reverse, "
            "NoReverseMatch\ntry:\n    start = reverse('oidc-start')\nexcept NoReverseMatch:\n    start = None\n"
            "print(json.dumps({'backends': settings.AUTHENTICATION_BACKENDS, 'start': start}))")
    base = {k: v for k, v in os.environ.items() if not k.startswith("WVD_")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**base, "DJANGO_SETTINGS_MODULE": "wvdportal.settings",
                               "WVD_DATA_DIR": str(tmp_path / "data"), **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_unset_the_project_has_no_oidc_backend_and_no_urls(tmp_path):
    found = settings_in_a_fresh_process({}, tmp_path)

    assert "core.oidc.OidcBackend" not in found["backends"] and found["start"] is None


def test_set_the_project_has_the_backend_after_model_backend_and_the_urls(tmp_path):
    found = settings_in_a_fresh_process(COMPLETE, tmp_path)

    assert found["backends"][-1] == "core.oidc.OidcBackend"
    assert found["backends"].index("django.contrib.auth.backends.ModelBackend") < len(found["backends"]) - 1
    assert found["start"] == "/accounts/oidc/start/"
