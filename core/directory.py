"""Directory sign-in (LDAP, Active Directory): users sign in with their directory password, and their
directory groups become Django groups that application groups can be assigned to (docs/directory.md).

django-auth-ldap does the work; this module configures it from ``settings.DIRECTORY`` (the ``WVD_LDAP_*``
variables, core.environment.env_directory) and adds what it leaves to us:

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
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import ldap
import ldap.filter
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django_auth_ldap.backend import LDAPBackend, ldap_error
from django_auth_ldap.config import LDAPGroupType, LDAPSearch, LDAPSettings

from core.models import DirectoryAccount

log = logging.getLogger(__name__)

DIRECTORY_UNAVAILABLE = ("The directory that checks your password could not be reached, so you cannot sign in "
                         "right now. Try again in a few minutes; if it keeps happening, tell your administrator.")
USER_FILTER = "(|(uid=%(user)s)(sAMAccountName=%(user)s))"
GROUP_CLASSES = ("groupOfNames", "groupOfUniqueNames", "posixGroup", "group")
GROUP_FILTER = "(|" + "".join(f"(objectClass={name})" for name in GROUP_CLASSES) + ")"
USER_ATTRIBUTES = {"first_name": "givenName", "last_name": "sn", "email": "mail"}
# The attribute on the request that marks a sign-in the directory could not answer.
REQUEST_FLAG = "wvd_directory_error"
# django-auth-ldap's names for where a directory call failed, in words for the log.
ERROR_CONTEXTS = {
    "authenticate": "checking the password",
    "search_for_user_dn": "looking up the user",
    "populate_user": "reading the user",
    "mirror_groups": "reading the user's groups",
    "get_group_permissions": "reading the user's groups",
}


class DirectoryGroupType(LDAPGroupType):
    """The groups a user is in, of every kind this module supports, in one search: ``member`` or
    ``uniqueMember`` naming the user's DN, or ``memberUid`` naming their uid. Named by ``cn``."""

    def user_groups(self, ldap_user, group_search: LDAPSearch) -> list:
        escape = ldap.filter.escape_filter_chars
        terms = [f"(member={escape(ldap_user.dn)})", f"(uniqueMember={escape(ldap_user.dn)})"]
        for uid in (ldap_user.attrs or {}).get("uid", [])[:1]:
            terms.append(f"(memberUid={escape(uid)})")
        return group_search.search_with_additional_term_string(f"(|{''.join(terms)})").execute(ldap_user.connection)


def connection_options(config: dict) -> dict:
    """Bounded time for every call (connect, bind, search), and no chasing of referrals (Active Directory
    returns some that lead to servers we were not configured for)."""
    return {ldap.OPT_NETWORK_TIMEOUT: config["TIMEOUT"], ldap.OPT_TIMEOUT: config["TIMEOUT"], ldap.OPT_REFERRALS: 0}


def ldap_settings(config: dict) -> dict:
    """django-auth-ldap's settings (the names it reads after AUTH_LDAP_) for the configured directory."""
    flags = {"is_staff": config["STAFF_GROUP"]} if config["STAFF_GROUP"] else {}
    return {
        "SERVER_URI": config["URI"],
        "BIND_DN": config["BIND_DN"],
        "BIND_PASSWORD": config["BIND_PASSWORD"],
        "CONNECTION_OPTIONS": connection_options(config),
        "USER_SEARCH": LDAPSearch(config["USER_SEARCH"], ldap.SCOPE_SUBTREE, USER_FILTER),
        "USER_ATTR_MAP": USER_ATTRIBUTES,
        "USER_FLAGS_BY_GROUP": flags,
        "GROUP_SEARCH": LDAPSearch(config["GROUP_SEARCH"], ldap.SCOPE_SUBTREE, GROUP_FILTER),
        "GROUP_TYPE": DirectoryGroupType(name_attr="cn"),
        "MIRROR_GROUPS": True,
        "ALWAYS_UPDATE_USER": True,
        "CACHE_TIMEOUT": 0,  # membership read fresh at every sign-in: a removal must count at once
    }


class DirectoryBackend(LDAPBackend):
    """django-auth-ldap's backend, configured from ``settings.DIRECTORY`` and listed after ModelBackend (a
    local admin signs in without waiting on the directory). Installed only when WVD_LDAP_URI is set."""

    @property
    def settings(self) -> LDAPSettings:
        if self._settings is None:
            # A prefix nothing in settings.py uses: every value comes from WVD_LDAP_* through ldap_settings().
            self._settings = LDAPSettings("WVD_UNUSED_AUTH_LDAP_", ldap_settings(settings.DIRECTORY))
        return self._settings

    def get_or_build_user(self, username: str, ldap_user):
        user, built = super().get_or_build_user(username, ldap_user)
        if not built and not DirectoryAccount.objects.filter(user=user).exists():
            log.warning("directory user %s (%s) not signed in: a local account has that name", username, ldap_user.dn)
            raise ldap_user.AuthenticationFailed("a local account has this name")
        return user, built

    def authenticate_ldap_user(self, ldap_user, password: str):
        user = super().authenticate_ldap_user(ldap_user, password)
        if user is None:
            return None
        if not user.is_active:
            log.info("directory user %s not signed in: the account is deactivated here", user.get_username())
            return None
        record_account(user, ldap_user.dn)
        return user


def record_account(user, dn: str) -> None:
    DirectoryAccount.objects.update_or_create(user=user, defaults={"dn": dn, "synced_at": timezone.now()})


# --- a directory that could not answer -----------------------------------------------------------------

_errors: contextvars.ContextVar[list | None] = contextvars.ContextVar("wvd_directory_errors", default=None)


def describe(exception: Exception) -> str:
    """One line for an LDAPError: its description and, when the server said more, that."""
    detail = exception.args[0] if exception.args and isinstance(exception.args[0], dict) else {}
    text = detail.get("desc") or type(exception).__name__
    return f"{text} ({detail['info']})" if detail.get("info") else text


def _note_error(sender, context: str, user, request, exception: Exception, **kwargs) -> None:
    """Receives django-auth-ldap's ldap_error: the directory failed (not a wrong password, which is no error)."""
    reason = describe(exception)
    log.warning("directory %s failed while %s: %s", settings.DIRECTORY["URI"] if settings.DIRECTORY else "?",
                ERROR_CONTEXTS.get(context, context), reason)
    if request is not None:
        setattr(getattr(request, "_request", request), REQUEST_FLAG, reason)
    collected = _errors.get()
    if collected is not None:
        collected.append(reason)


def connect() -> None:
    ldap_error.connect(_note_error, dispatch_uid="wvd-directory-error")


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


# --- the periodic sync ----------------------------------------------------------------------------------


@dataclass
class SyncResult:
    refreshed: int = 0
    deactivated: int = 0
    unavailable: str = ""  # why the run stopped early: the directory failed


def _probe(config: dict) -> None:
    """Bind as the service account and read the user base: raises ldap.LDAPError when the directory cannot
    answer, so the sync never takes a silent directory for one that has lost everybody."""
    connection = ldap.initialize(config["URI"], bytes_mode=False)  # a list of servers, as the backend's
    try:
        for option, value in connection_options(config).items():
            connection.set_option(option, value)
        connection.simple_bind_s(config["BIND_DN"], config["BIND_PASSWORD"])
        connection.search_s(config["USER_SEARCH"], ldap.SCOPE_BASE, attrlist=["1.1"])
    finally:
        connection.unbind_s()


def sync_directory(batch: int | None = None) -> SyncResult:
    """Refresh up to ``batch`` directory users, least recently read first: attributes, staff flag and
    groups as at a sign-in. A user the directory no longer has is deactivated and loses their groups (both
    advance their access change: tickets issued before are refused). The run stops at the first directory
    failure, changing nobody it could not read."""
    config = settings.DIRECTORY
    result = SyncResult()
    if not config:
        return result
    try:
        _probe(config)
    except ldap.LDAPError as exc:
        result.unavailable = describe(exc)
        log.warning("directory sync skipped: %s did not answer: %s", config["URI"], result.unavailable)
        return result
    backend = DirectoryBackend()
    accounts = DirectoryAccount.objects.select_related("user").order_by("synced_at")[:batch or config["SYNC_BATCH"]]
    for account in accounts:
        user = account.user
        with collected_errors() as errors:
            found = backend.populate_user(user.get_username())
        if errors:
            result.unavailable = errors[0]
            log.warning("directory sync stopped at %s: %s", user.get_username(), result.unavailable)
            break
        with transaction.atomic():
            if found is None:
                if user.is_active:
                    user.is_active = False
                    user.save(update_fields=["is_active"])
                    result.deactivated += 1
                    log.info("directory user %s (%s) is gone from the directory: deactivated", user.get_username(),
                             account.dn)
                if user.groups.exists():
                    user.groups.clear()
            else:
                result.refreshed += 1
            dn = found.ldap_user.dn if found is not None else account.dn
            DirectoryAccount.objects.filter(pk=account.pk).update(dn=dn, synced_at=timezone.now())
    log.info("directory sync: %d refreshed, %d deactivated%s", result.refreshed, result.deactivated,
             f", stopped: {result.unavailable}" if result.unavailable else "")
    return result
