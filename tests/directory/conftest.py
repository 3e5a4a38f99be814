"""The control plane configured against the real OpenLDAP directory (``ldap_server``, testbed/slapd.py: one
per test session, registered in tests/conftest.py so tests/e2e shares it) as WVD_LDAP_* would configure it
(settings.DIRECTORY).

Each test makes its own users and groups (names unique to the test and to the run), so tests share the one
slapd without seeing each other's entries, and the sign-in throttle's counts (kept in Redis, when there is
one, beyond this run) never carry over to another test or run. Skipped, with the reason, where slapd is not installed.
"""
from __future__ import annotations

import itertools
import secrets

import pytest

from core import directory as core_directory
from testbed import slapd
from testbed.ports import free_port

PASSWORD = "directory-horse-battery"
_serial = itertools.count(1)
_run = secrets.token_hex(3)


def directory_config(uri: str, **overrides) -> dict:
    config = {
        "URI": uri,
        "BIND_DN": slapd.READER_DN,
        "BIND_PASSWORD": "reader-secret",
        "USER_SEARCH": slapd.PEOPLE,
        "GROUP_SEARCH": slapd.GROUPS,
        "STAFF_GROUP": "",
        "TIMEOUT": 2,
        "SYNC_MINUTES": 15,
        "SYNC_BATCH": 500,
    }
    return {**config, **overrides}


class Directory:
    """The test's view of the directory: unique names, and the settings that point the control plane at it."""

    def __init__(self, server: slapd.Slapd, settings) -> None:
        self.server = server
        self.settings = settings
        self.suffix = f"t{next(_serial)}r{_run}"

    def name(self, base: str) -> str:
        return f"{base}{self.suffix}"

    def user(self, base: str, password: str = PASSWORD, **attributes) -> str:
        """A directory user; returns the user name to sign in with."""
        uid = self.name(base)
        self.server.add_user(uid, password, **attributes)
        return uid

    def group(self, base: str, members: list[str], kind: str = "groupOfNames") -> str:
        """A directory group; returns its name (the Django group's name once mirrored)."""
        cn = self.name(base)
        self.server.add_group(cn, members, kind=kind)
        return cn

    def configure(self, **overrides) -> None:
        self.settings.DIRECTORY = directory_config(self.server.uri, **overrides)
        core_directory.connect()  # what the app registry does at start-up when a directory is configured


@pytest.fixture
def directory(ldap_server, settings, db) -> Directory:
    """The control plane signing users in against the test directory."""
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, "core.ldapdirectory.DirectoryBackend"]
    settings.TRUSTED_PROXIES = ()
    directory = Directory(ldap_server, settings)
    directory.configure()
    return directory


@pytest.fixture
def unreachable_uri() -> str:
    """A loopback port nothing listens on: a directory that is down."""
    return f"ldap://127.0.0.1:{free_port()}"
