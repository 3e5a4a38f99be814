"""Typed readers for ``WVD_*`` environment variables.

Every reader fails loudly: a malformed value raises ``ImproperlyConfigured`` naming the variable,
never falls back silently to a default.
"""
from __future__ import annotations

import ipaddress
import os
import re
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false, 1/0, yes/no, on/off)")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={value} is above the maximum {maximum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default)
    items = [item.strip() for item in raw.split(",")]
    if any(not item for item in items):
        raise ImproperlyConfigured(f"{name}={raw!r} has an empty entry; separate values with single commas")
    return items


def env_networks(name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated IP addresses or CIDR networks, IPv4 or IPv6 (a bare address is its own /32 or
    /128); unset or empty: none."""
    networks = []
    for item in env_list(name, []):
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError as exc:
            if "host bits set" in str(exc):
                meant = ipaddress.ip_network(item, strict=False)
                raise ImproperlyConfigured(f"{name}: {item!r} has host bits set (did you mean {meant}?)") from None
            raise ImproperlyConfigured(f"{name}: {item!r} is not an IP address or a CIDR network") from None
    return tuple(networks)


def env_retired(name: str, instead: str) -> None:
    """Refuse a variable that is no longer read, rather than let a deployment believe it still holds."""
    if env_str(name):
        raise ImproperlyConfigured(f"{name} is no longer read: {instead}")


def parse_listen(name: str, value: str) -> tuple[str, int]:
    """Parse ``host:port`` (``[v6]:port`` for IPv6) as used by the ``*_LISTEN`` variables."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ImproperlyConfigured(f"{name}={value!r} must be host:port, e.g. 127.0.0.1:8000")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} has a port that is not a number") from None
    if not 1 <= port <= 65535:
        raise ImproperlyConfigured(f"{name}={value!r} has a port outside 1-65535")
    return host, port


def env_listen(name: str, default: str) -> tuple[str, int]:
    return parse_listen(name, env_str(name, default) or default)


def env_optional_listen(name: str) -> tuple[str, int] | None:
    """``host:port`` as ``env_listen``; unset or empty: None (the listener is off)."""
    value = env_str(name)
    return parse_listen(name, value) if value else None


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (case-insensitive); unset or empty: ``default``."""
    value = env_str(name).lower() or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={env_str(name)!r} is not one of {', '.join(choices)}")
    return value


def env_data_dir(name: str, default: Path) -> Path:
    raw = env_str(name)
    path = Path(raw).expanduser() if raw else default
    if not path.is_absolute():
        path = (Path.cwd() / path).resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImproperlyConfigured(f"{name}={str(path)!r} cannot be created: {exc.strerror}") from None
    return path


def env_database(name: str, default_sqlite: Path, *, conn_max_age: int = 0) -> dict:
    """The database from a URL; ``conn_max_age`` (seconds, 0: a new connection for every call) applies to
    PostgreSQL, with a health check before each reuse so a restarted server costs no failed call."""
    raw = env_str(name)
    if not raw:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(default_sqlite),
            # A generous lock timeout: the embedded default shares one file between web and tasks.
            # IMMEDIATE: a transaction takes the write lock when it starts, so a read-then-write
            # (select_for_update) waits its turn instead of failing with "database is locked".
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    scheme = urlsplit(raw).scheme
    if scheme not in {"sqlite", "postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(f"{name} must be a sqlite:// or postgres:// URL, got scheme {scheme!r}")
    try:
        config = dj_database_url.parse(raw, conn_max_age=conn_max_age if scheme != "sqlite" else 0,
                                       conn_health_checks=scheme != "sqlite" and conn_max_age > 0)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not a valid database URL: {exc}") from None
    if scheme != "sqlite" and not config.get("NAME"):
        raise ImproperlyConfigured(f"{name} names no database (postgres://user@host:port/DBNAME)")
    return config


def env_redis_url(name: str) -> str:
    raw = env_str(name)
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
        raise ImproperlyConfigured(f"{name}={raw!r} must be a redis://host:port/db URL")
    try:
        parts.port
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} has an invalid port") from None
    return raw


def env_secret_key(name: str, data_dir: Path) -> str:
    """The secret key from the environment, or one generated once and kept in the data dir."""
    raw = env_str(name)
    if raw:
        if len(raw) < 32:
            raise ImproperlyConfigured(f"{name} is too short: use at least 32 random characters")
        return raw
    path = data_dir / "secret_key"
    try:
        if path.exists():
            key = path.read_text().strip()
            if len(key) >= 32:
                return key
        key = secrets.token_urlsafe(50)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        return key
    except OSError as exc:
        raise ImproperlyConfigured(f"{name} is unset and {path} cannot be used: {exc.strerror}") from None


# A DNS host name: dot-separated labels of letters, digits and inner hyphens, 253 characters at most.
_DNS_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DNS_NAME = re.compile(rf"(?=.{{1,253}}\Z){_DNS_LABEL}(\.{_DNS_LABEL})*")
# Listen hosts that mean "every address": no client reaches the server by these, so no certificate names them.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "*"})


def host_name(name: str, value: str) -> str:
    """``value`` as a certificate can name it: an IP address (in its canonical text) or a DNS name (lower
    case); raises ImproperlyConfigured naming ``name`` otherwise."""
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if not DNS_NAME.fullmatch(text):
        raise ImproperlyConfigured(f"{name}: {value!r} is neither a DNS name nor an IP address")
    return text.lower()


def env_host_names(name: str) -> list[str]:
    """Comma-separated DNS names or IP addresses (see ``host_name``); unset or empty: none."""
    return list(dict.fromkeys(host_name(name, item) for item in env_list(name, [])))


def gateway_addresses(listen: tuple[str, int], web_listen: tuple[str, int] | None = None) -> dict:
    """The settings that follow where the gateway listens unless their own variable is set: the public
    address written into .rdp files and connect orders, the names the server's certificate covers, and the
    feed's publisher id. Settings read them with WVD_GATEWAY_LISTEN and WVD_WEB_LISTEN; ``serve
    --gateway-listen``/``--listen`` again with its own addresses, so the one option is enough.

    The certificate (the gateway's, which the web listener shares) names the public host first (its common
    name), then WVD_GATEWAY_ALIASES, then the listen hosts that are not wildcards, then ``localhost`` and
    ``127.0.0.1``; WVD_GATEWAY_TLS_NAMES replaces the whole list."""
    host = env_str("WVD_GATEWAY_PUBLIC_HOST") or listen[0]
    port = env_int("WVD_GATEWAY_PUBLIC_PORT", listen[1], minimum=1, maximum=65535)
    aliases = env_host_names("WVD_GATEWAY_ALIASES")
    defaults = [host, *aliases, listen[0], *([web_listen[0]] if web_listen else []), "localhost", "127.0.0.1"]
    names = [host_name("WVD_GATEWAY_PUBLIC_HOST" if index == 0 else "WVD_GATEWAY_LISTEN/WVD_WEB_LISTEN", value)
             for index, value in enumerate(defaults) if value.strip("[]") not in WILDCARD_HOSTS]
    explicit = env_host_names("WVD_GATEWAY_TLS_NAMES")
    return {
        "GATEWAY_PUBLIC_HOST": host,
        "GATEWAY_PUBLIC_PORT": port,
        "GATEWAY_ALIASES": aliases,
        "GATEWAY_TLS_NAMES": explicit or list(dict.fromkeys(names)),
        "FEED_PUBLISHER_ID": env_str("WVD_FEED_PUBLISHER_ID") or host,
    }


DEFAULT_PORTS = {"https": 443, "http": 80}


OIDC_VARIABLES = ("WVD_OIDC_ISSUER", "WVD_OIDC_CLIENT_ID", "WVD_OIDC_CLIENT_SECRET", "WVD_OIDC_GROUPS_CLAIM",
                  "WVD_OIDC_PROVIDER_NAME", "WVD_OIDC_SCOPES", "WVD_OIDC_CA_FILE", "WVD_OIDC_TIMEOUT")
_CLAIM_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,100}")


def env_oidc() -> dict | None:
    """The OpenID Connect provider users may sign in with (core/oidc.py, docs/oidc.md), from ``WVD_OIDC_*``;
    None when WVD_OIDC_ISSUER is unset (then no other WVD_OIDC_* variable may be set: a half-configured
    provider would silently show no button). The provider's endpoints and keys come from its discovery
    document at sign-in time, not from here: the provider may be down while the control plane starts."""
    issuer = env_str("WVD_OIDC_ISSUER")
    if not issuer:
        stray = [name for name in OIDC_VARIABLES[1:] if env_str(name)]
        if stray:
            raise ImproperlyConfigured(f"{', '.join(stray)} set without WVD_OIDC_ISSUER: set it too, or unset them")
        return None
    parts = urlsplit(issuer)
    try:
        parts.port
    except ValueError:
        raise ImproperlyConfigured(f"WVD_OIDC_ISSUER={issuer!r} has an invalid port") from None
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment or parts.username:
        raise ImproperlyConfigured(f"WVD_OIDC_ISSUER={issuer!r} must be an https:// URL without query, fragment "
                                   "or credentials (the provider's issuer, e.g. https://id.example.org/realms/staff)")
    client_id = env_str("WVD_OIDC_CLIENT_ID")
    if not client_id:
        raise ImproperlyConfigured("WVD_OIDC_CLIENT_ID is required with WVD_OIDC_ISSUER (the client id the provider "
                                   "gave this control plane)")
    secret = os.environ.get("WVD_OIDC_CLIENT_SECRET", "")
    if not secret.strip():
        raise ImproperlyConfigured("WVD_OIDC_CLIENT_SECRET is required with WVD_OIDC_ISSUER (the client's secret)")
    claim = env_str("WVD_OIDC_GROUPS_CLAIM", "groups") or "groups"
    if not _CLAIM_NAME.fullmatch(claim):
        raise ImproperlyConfigured(f"WVD_OIDC_GROUPS_CLAIM={claim!r} is not a claim name (letters, digits, _ . : / -)")
    scopes = env_str("WVD_OIDC_SCOPES", "openid email profile") or "openid email profile"
    if "openid" not in scopes.split() or not all(_CLAIM_NAME.fullmatch(scope) for scope in scopes.split()):
        raise ImproperlyConfigured(f"WVD_OIDC_SCOPES={scopes!r} must be scope names separated by spaces, "
                                   "openid among them")
    ca_file = env_str("WVD_OIDC_CA_FILE")
    if ca_file and not Path(ca_file).is_file():
        raise ImproperlyConfigured(f"WVD_OIDC_CA_FILE={ca_file!r} is not a file (PEM certificates to verify the "
                                   "provider with)")
    return {
        "ISSUER": issuer,
        "CLIENT_ID": client_id,
        "CLIENT_SECRET": secret,
        "GROUPS_CLAIM": claim,
        "SCOPES": " ".join(scopes.split()),
        # The button's words: "Sign in with <name>".
        "PROVIDER_NAME": env_str("WVD_OIDC_PROVIDER_NAME") or parts.hostname,
        # PEM file of the CAs the provider's certificate must chain to; empty: the certifi bundle.
        "CA_FILE": ca_file,
        # Every call to the provider (discovery, keys, token, userinfo) gives up after this many seconds.
        "TIMEOUT": env_int("WVD_OIDC_TIMEOUT", 5, minimum=1, maximum=60),
    }


def normalize_origin(value: str) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port (how a browser's Origin header and
    a configured origin compare); None for anything else (a path, a query, user info, no host)."""
    parts = urlsplit(value.strip())
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username is not None or parts.password is not None:
        return None
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    scheme = parts.scheme.lower()
    return f"{scheme}://{host}" + ("" if port in (None, DEFAULT_PORTS[scheme]) else f":{port}")


def web_origins(name: str, allowed_hosts: list[str], web_listen: tuple[str, int], web_tls: bool,
                csrf_trusted_origins: list[str]) -> tuple[str, ...]:
    """The origins of the portal's pages (the browser client's WebSocket must come from one): ``name``
    (comma-separated ``scheme://host[:port]``), or by default the CSRF-trusted origins and, for every
    concrete ALLOWED_HOSTS name, the web listener's scheme and port on it."""
    configured = env_list(name, [])
    if configured:
        origins = []
        for item in configured:
            origin = normalize_origin(item)
            if origin is None:
                raise ImproperlyConfigured(f"{name}: {item!r} is not an origin (scheme://host[:port], https or http)")
            origins.append(origin)
        return tuple(dict.fromkeys(origins))
    scheme = "https" if web_tls else "http"
    derived = [*csrf_trusted_origins]
    for host in allowed_hosts:
        if host == "*" or host.startswith(".") or not host:
            continue  # a wildcard names no single origin
        derived.append(f"{scheme}://{host}:{web_listen[1]}")
    return tuple(dict.fromkeys(origin for origin in map(normalize_origin, derived) if origin is not None))


LDAP_VARIABLES = ("WVD_LDAP_URI", "WVD_LDAP_BIND_DN", "WVD_LDAP_BIND_PASSWORD", "WVD_LDAP_USER_SEARCH",
                  "WVD_LDAP_GROUP_SEARCH", "WVD_LDAP_STAFF_GROUP")


def _distinguished_name(name: str, required: bool) -> str:
    value = env_str(name)
    if not value:
        if required:
            raise ImproperlyConfigured(f"{name} is required with WVD_LDAP_URI (a base DN, e.g. ou=people,dc=example,dc=org)")
        return ""
    # Only when a directory is configured: python-ldap's DN grammar (RFC 4514).
    try:
        import ldap.dn  # noqa: PLC0415 - a library, not an arrow between our modules
    except ImportError:
        raise ImproperlyConfigured(
            "WVD_LDAP_URI is set but python-ldap is not installed: apt-get install libldap2-dev libsasl2-dev, "
            "then `make venv` (or pip install -r requirements-directory.txt)") from None

    if not ldap.dn.is_dn(value) or "=" not in value:
        raise ImproperlyConfigured(f"{name}={value!r} is not a distinguished name (e.g. ou=people,dc=example,dc=org)")
    return value


def env_directory() -> dict | None:
    """The directory users sign in against (core/directory.py, docs/directory.md), from ``WVD_LDAP_*``; None
    when WVD_LDAP_URI is unset (then no other WVD_LDAP_* variable may be set: a half-configured directory
    would silently sign nobody in)."""
    uri = env_str("WVD_LDAP_URI")
    if not uri:
        stray = [name for name in LDAP_VARIABLES[1:] if env_str(name)]
        if stray:
            raise ImproperlyConfigured(f"{', '.join(stray)} set without WVD_LDAP_URI: set it too, or unset them")
        return None
    for item in uri.split():
        parts = urlsplit(item)
        try:
            parts.port
        except ValueError:
            raise ImproperlyConfigured(f"WVD_LDAP_URI: {item!r} has an invalid port") from None
        if parts.scheme not in {"ldap", "ldaps"} or not parts.hostname or parts.path not in ("", "/"):
            raise ImproperlyConfigured(f"WVD_LDAP_URI: {item!r} must be ldap://host[:port] or ldaps://host[:port] "
                                       "(several separated by spaces)")
    bind_dn = _distinguished_name("WVD_LDAP_BIND_DN", required=False)
    bind_password = os.environ.get("WVD_LDAP_BIND_PASSWORD", "")
    if bind_dn and not bind_password:
        raise ImproperlyConfigured("WVD_LDAP_BIND_DN is set but WVD_LDAP_BIND_PASSWORD is empty")
    if bind_password and not bind_dn:
        raise ImproperlyConfigured("WVD_LDAP_BIND_PASSWORD is set but WVD_LDAP_BIND_DN is not")
    return {
        "URI": " ".join(uri.split()),
        "BIND_DN": bind_dn,
        "BIND_PASSWORD": bind_password,
        "USER_SEARCH": _distinguished_name("WVD_LDAP_USER_SEARCH", required=True),
        "GROUP_SEARCH": _distinguished_name("WVD_LDAP_GROUP_SEARCH", required=True),
        "STAFF_GROUP": _distinguished_name("WVD_LDAP_STAFF_GROUP", required=False),
        # Every directory call (connect, bind, search) gives up after this many seconds.
        "TIMEOUT": env_int("WVD_LDAP_TIMEOUT", 5, minimum=1, maximum=60),
        "SYNC_MINUTES": env_int("WVD_LDAP_SYNC_MINUTES", 15, minimum=1, maximum=24 * 60),
        "SYNC_BATCH": env_int("WVD_LDAP_SYNC_BATCH", 500, minimum=1, maximum=100_000),
    }
