"""Directory sign-in (LDAP, Active Directory): users sign in with their directory password, and their
directory groups become Django groups that application groups can be assigned to (docs/directory.md).

django-auth-ldap does the work in ``core/ldapdirectory.py``, configured from ``settings.DIRECTORY`` (the
``WVD_LDAP_*`` variables, core.environment.env_directory). This module is what the sign-in surfaces and the
app registry need of it without python-ldap, which is installed only where OpenLDAP's headers let it build
(requirements-directory.txt) and imported only when a directory is configured. Together they add what
django-auth-ldap leaves to us:

- A local account is never signed in by the directory: the backend takes over only users it created
  (``DirectoryAccount``), so a directory entry named like a local admin cannot become that admin.
- A deactivated user stays out: the directory password does not bring them back.
- A directory that is down, hangs or refuses the service account is told apart from a wrong password:
  every directory call gives up after WVD_LDAP_TIMEOUT seconds, the failure is logged once, and the
  sign-in surfaces show ``DIRECTORY_UNAVAILABLE`` (``directory_unavailable(request)``).
- Group membership follows the directory at each sign-in and in ``sync_directory`` (beat, every
  WVD_LDAP_SYNC_MINUTES): the user's Django groups are set to their directory groups, which moves the
  user's access-change moment (core/signals.py), so connection tickets issued before a removal are refused.
  A user the directory no longer has is deactivated and loses their groups.

Group kinds, all in one search under WVD_LDAP_GROUP_SEARCH: ``groupOfNames`` and Active Directory's
``group`` (``member`` = the user's DN), ``groupOfUniqueNames`` (``uniqueMember``), ``posixGroup``
(``memberUid`` = the user's uid). Not nested groups, nor a posixAccount's primary ``gidNumber``.
"""
from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest

DIRECTORY_UNAVAILABLE = ("The directory that checks your password could not be reached, so you cannot sign in "
                         "right now. Try again in a few minutes; if it keeps happening, tell your administrator.")
# The attribute on the request that marks a sign-in the directory could not answer.
REQUEST_FLAG = "wvd_directory_error"


_errors: contextvars.ContextVar[list | None] = contextvars.ContextVar("wvd_directory_errors", default=None)


@dataclass
class SyncResult:
    refreshed: int = 0
    deactivated: int = 0
    unavailable: str = ""  # why the run stopped early: the directory failed


def connect() -> None:
    """Listen for django-auth-ldap's failures, when a directory is configured (python-ldap is imported then only)."""
    if settings.DIRECTORY:
        from core import ldapdirectory  # noqa: PLC0415 - python-ldap only where a directory is configured

        ldapdirectory.connect()


def directory_unavailable(request: HttpRequest | None) -> bool:
    """Whether this request's sign-in failed because the directory could not answer."""
    return bool(getattr(getattr(request, "_request", request), REQUEST_FLAG, ""))


@contextmanager
def collected_errors() -> Iterator[list[str]]:
    """The directory failures reported while the block runs (in this thread or task)."""
    errors: list[str] = []
    token = _errors.set(errors)
    try:
        yield errors
    finally:
        _errors.reset(token)


def note_failure(request: HttpRequest | None, reason: str) -> None:
    """The directory could not answer (core.ldapdirectory, on django-auth-ldap's ldap_error): mark the request,
    whose sign-in surface then says so, and the block collecting failures (collected_errors)."""
    if request is not None:
        setattr(getattr(request, "_request", request), REQUEST_FLAG, reason)
    collected = _errors.get()
    if collected is not None:
        collected.append(reason)


def sync_directory(batch: int | None = None) -> SyncResult:
    """The periodic sync (core.ldapdirectory.sync_directory); nothing to do without a directory."""
    if not settings.DIRECTORY:
        return SyncResult()
    from core import ldapdirectory  # noqa: PLC0415 - python-ldap only where a directory is configured

    return ldapdirectory.sync_directory(batch)
