"""Directory sign-in's work with python-ldap and django-auth-ldap (core/directory.py says what it adds to
django-auth-ldap): the backend, the group kinds, the failures it reports and the periodic sync. Imported only
when a directory is configured (settings.DIRECTORY): python-ldap is installed where OpenLDAP's headers let it
build (requirements-directory.txt). It logs as ``core.directory``, the one logger of directory sign-in.
"""
from __future__ import annotations

import logging

import ldap
import ldap.filter
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_auth_ldap.backend import LDAPBackend, ldap_error
from django_auth_ldap.config import LDAPGroupType, LDAPSearch, LDAPSettings

from core.directory import SyncResult, collected_errors, note_failure
from core.models import DirectoryAccount

log = logging.getLogger("core.directory")

USER_FILTER = "(|(uid=%(user)s)(sAMAccountName=%(user)s))"
GROUP_CLASSES = ("groupOfNames", "groupOfUniqueNames", "posixGroup", "group")
GROUP_FILTER = "(|" + "".join(f"(objectClass={name})" for name in GROUP_CLASSES) + ")"
USER_ATTRIBUTES = {"first_name": "givenName", "last_name": "sn", "email": "mail"}
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
    note_failure(request, reason)


def connect() -> None:
    ldap_error.connect(_note_error, dispatch_uid="wvd-directory-error")


# --- the periodic sync ----------------------------------------------------------------------------------


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
