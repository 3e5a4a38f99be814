"""Settings come from WVD_* variables and refuse malformed values with one clear line."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from core import environment

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("WVD_"):
            monkeypatch.delenv(name)
    return monkeypatch


def run_manage(args: list[str], env_overrides: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WVD_")}
    env.update({"WVD_DATA_DIR": str(tmp_path / "data")}, **env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WVD_DATABASE_URL", "mysql://root@127.0.0.1/test"),
        ("WVD_DATABASE_URL", "not a url"),
        ("WVD_REDIS_URL", "http://127.0.0.1:6379"),
        ("WVD_REDIS_URL", "redis://127.0.0.1:notaport/0"),
        ("WVD_WEB_LISTEN", "127.0.0.1"),
        ("WVD_WEB_LISTEN", "127.0.0.1:70000"),
        ("WVD_SECRET_KEY", "short"),
        ("WVD_DEBUG", "maybe"),
        ("WVD_ALLOWED_HOSTS", "a,,b"),
        ("WVD_GATEWAY_RELAY_URL", "wss://gw.example.net"),
        ("WVD_GATEWAY_RELAY_URL", "https://gw.example.net:99999"),
        ("WVD_GATEWAY_RELAY_URL", "https://"),
        ("WVD_TRUSTED_PROXIES", "proxy.example.net"),
        ("WVD_TRUSTED_PROXIES", "10.0.0.1/8"),
        ("WVD_TRUSTED_PROXIES", "2001:db8::/129"),
        ("WVD_SIGNIN_MAX_FAILURES_PER_USER", "5"),
        ("WVD_GATEWAY_ALIASES", "gw.example.net,,rdp.example.net"),
        ("WVD_GATEWAY_ALIASES", "gw.example.net,not a name"),
        ("WVD_GATEWAY_ALIASES", "https://gw.example.net"),
        ("WVD_GATEWAY_ALIASES", "gw_1.example.net"),
        ("WVD_GATEWAY_ALIASES", "10.0.0.0/8"),
        ("WVD_GATEWAY_PUBLIC_HOST", "gw.example.net:443"),
        ("WVD_GATEWAY_TLS_NAMES", "*.example.net"),
        ("WVD_WEB_TLS", "maybe"),
        ("WVD_HSTS_SECONDS", "-1"),
        ("WVD_HSTS_SECONDS", "one year"),
        ("WVD_WEB_CERT_FILE", "/etc/ssl/web.pem"),  # without WVD_WEB_KEY_FILE
    ],
)
def test_a_bad_value_stops_start_up_with_one_line_naming_the_variable(name, value, tmp_path):
    result = run_manage(["check"], {name: value}, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0]
    assert "Traceback" not in result.stderr


def test_the_embedded_default_passes_the_system_checks(tmp_path):
    result = run_manage(["check"], {}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "secret_key").stat().st_mode & 0o777 == 0o600


def test_the_generated_secret_key_is_kept_between_starts(clean_env, tmp_path):
    first = environment.env_secret_key("WVD_SECRET_KEY", tmp_path)
    second = environment.env_secret_key("WVD_SECRET_KEY", tmp_path)
    assert first == second and len(first) >= 32


def test_a_given_secret_key_is_used_as_is(clean_env, tmp_path):
    clean_env.setenv("WVD_SECRET_KEY", "k" * 40)
    assert environment.env_secret_key("WVD_SECRET_KEY", tmp_path) == "k" * 40
    assert not (tmp_path / "secret_key").exists()


def test_the_database_defaults_to_sqlite_in_the_data_dir(clean_env, tmp_path):
    config = environment.env_database("WVD_DATABASE_URL", tmp_path / "db.sqlite3")
    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert config["NAME"] == str(tmp_path / "db.sqlite3")


def test_a_postgres_url_selects_postgresql(clean_env):
    clean_env.setenv("WVD_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    config = environment.env_database("WVD_DATABASE_URL", Path("/unused"))
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert (config["NAME"], config["HOST"], config["PORT"]) == ("test", "127.0.0.1", 5432)


def test_postgresql_connections_are_kept_as_long_as_asked_with_a_health_check(clean_env):
    clean_env.setenv("WVD_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    config = environment.env_database("WVD_DATABASE_URL", Path("/unused"), conn_max_age=300)
    assert (config["CONN_MAX_AGE"], config["CONN_HEALTH_CHECKS"]) == (300, True)
    config = environment.env_database("WVD_DATABASE_URL", Path("/unused"), conn_max_age=0)
    assert (config["CONN_MAX_AGE"], config["CONN_HEALTH_CHECKS"]) == (0, False)


def test_sqlite_opens_a_connection_per_call_whatever_the_max_age(clean_env, tmp_path):
    clean_env.setenv("WVD_DATABASE_URL", f"sqlite:///{tmp_path}/db.sqlite3")
    config = environment.env_database("WVD_DATABASE_URL", Path("/unused"), conn_max_age=300)
    assert (config["CONN_MAX_AGE"], config["CONN_HEALTH_CHECKS"]) == (0, False)


def test_a_postgres_url_without_a_database_name_is_refused(clean_env):
    clean_env.setenv("WVD_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/")
    with pytest.raises(ImproperlyConfigured, match="WVD_DATABASE_URL"):
        environment.env_database("WVD_DATABASE_URL", Path("/unused"))


def test_redis_is_optional(clean_env):
    assert environment.env_redis_url("WVD_REDIS_URL") == ""
    clean_env.setenv("WVD_REDIS_URL", "redis://127.0.0.1:6379/0")
    assert environment.env_redis_url("WVD_REDIS_URL") == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127.0.0.1:8000", ("127.0.0.1", 8000)), ("[::1]:8443", ("::1", 8443)), ("0.0.0.0:80", ("0.0.0.0", 80))],
)
def test_listen_addresses_parse_host_and_port(value, expected):
    assert environment.parse_listen("WVD_WEB_LISTEN", value) == expected


def test_lists_split_on_commas(clean_env):
    clean_env.setenv("WVD_ALLOWED_HOSTS", "portal.example.net, 127.0.0.1")
    assert environment.env_list("WVD_ALLOWED_HOSTS", []) == ["portal.example.net", "127.0.0.1"]


def test_trusted_proxies_are_addresses_and_networks_of_both_families(clean_env):
    assert environment.env_networks("WVD_TRUSTED_PROXIES") == ()
    clean_env.setenv("WVD_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.10,2001:db8::/32, ::1")
    assert [str(network) for network in environment.env_networks("WVD_TRUSTED_PROXIES")] == [
        "10.0.0.0/8", "192.0.2.10/32", "2001:db8::/32", "::1/128"]


def test_a_trusted_proxy_network_with_host_bits_set_says_what_was_meant(clean_env):
    clean_env.setenv("WVD_TRUSTED_PROXIES", "10.1.2.3/8")
    with pytest.raises(ImproperlyConfigured, match=r"WVD_TRUSTED_PROXIES: '10.1.2.3/8' has host bits set "
                                                   r"\(did you mean 10.0.0.0/8\?\)"):
        environment.env_networks("WVD_TRUSTED_PROXIES")


def test_a_retired_sign_in_variable_stops_start_up_naming_its_replacement(clean_env):
    clean_env.setenv("WVD_SIGNIN_MAX_FAILURES_PER_ADDRESS", "30")
    with pytest.raises(ImproperlyConfigured, match="WVD_SIGNIN_MAX_FAILURES_PER_ADDRESS is no longer read.*"
                                                   "WVD_SIGNIN_MAX_FAILURES"):
        environment.env_retired("WVD_SIGNIN_MAX_FAILURES_PER_ADDRESS", "use WVD_SIGNIN_MAX_FAILURES")


def test_integers_respect_their_bounds(clean_env):
    clean_env.setenv("WVD_X", "0")
    with pytest.raises(ImproperlyConfigured, match="WVD_X=0 is below the minimum 1"):
        environment.env_int("WVD_X", 5, minimum=1)


def test_the_shape_follows_redis():
    from django.conf import settings as live

    if live.REDIS_URL:
        assert live.CHANNEL_LAYERS["default"]["BACKEND"] == "core.channellayer.RedisChannelLayer"
        assert live.CELERY_TASK_ALWAYS_EAGER is False
    else:
        assert live.CHANNEL_LAYERS["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
        assert live.CELERY_TASK_ALWAYS_EAGER is True


def test_the_portals_origins_follow_the_web_listener_and_allowed_hosts(clean_env):
    origins = environment.web_origins("WVD_WEB_ORIGINS", ["portal.example", "*", ".wild.example", "[::1]"],
                                      ("0.0.0.0", 8000), True, ["https://proxy.example"])
    assert origins == ("https://proxy.example", "https://portal.example:8000", "https://[::1]:8000")
    assert environment.web_origins("WVD_WEB_ORIGINS", ["h"], ("h", 443), True, []) == ("https://h",)
    assert environment.web_origins("WVD_WEB_ORIGINS", ["h"], ("h", 8000), False, []) == ("http://h:8000",)


def test_configured_origins_replace_the_derived_ones_and_must_be_origins(clean_env):
    clean_env.setenv("WVD_WEB_ORIGINS", "https://Portal.Example:443,http://10.0.0.5:8080")
    assert environment.web_origins("WVD_WEB_ORIGINS", ["x"], ("x", 1), True, []) == (
        "https://portal.example", "http://10.0.0.5:8080")
    for bad in ("https://portal.example/path", "ftp://portal.example", "portal.example", "https://u@portal.example"):
        clean_env.setenv("WVD_WEB_ORIGINS", bad)
        with pytest.raises(ImproperlyConfigured, match="WVD_WEB_ORIGINS"):
            environment.web_origins("WVD_WEB_ORIGINS", ["x"], ("x", 1), True, [])
