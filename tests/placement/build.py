"""Small builders for placement tests: hosts, sessions and connections in one line each."""
from __future__ import annotations

import itertools
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from broker.choices import ConnectionState, SessionHostStatus, UserSessionState
from broker.models import Connection, HostPool, SessionHost, UserSession

_serial = itertools.count(1)


def user(name: str):
    # No password: hashing one costs a tenth of a second and these users never sign in.
    return get_user_model().objects.create_user(name, f"{name}@example.net", password=None)


def host(pool: HostPool, name: str, *, status: str = SessionHostStatus.AVAILABLE, drained: bool = False,
         assigned_user=None) -> SessionHost:
    return SessionHost.objects.create(host_pool=pool, name=name, status=status,
                                      allow_new_sessions=not drained, assigned_user=assigned_user)


def session(on: SessionHost, for_user, *, state: str = UserSessionState.ACTIVE, minutes_ago: int = 0) -> UserSession:
    next_id = UserSession.objects.filter(session_host=on).count() + 1
    return UserSession.objects.create(session_host=on, session_id=next_id, user=for_user,
                                      username=for_user.get_username() if for_user else "someone", state=state,
                                      started_at=timezone.now() - timedelta(minutes=minutes_ago))


def sessions(on: SessionHost, count: int) -> None:
    """``count`` sessions of distinct other users."""
    for _ in range(count):
        session(on, user(f"other{next(_serial)}"))


def connection(for_user, pool: HostPool | None) -> Connection:
    """A connection as the gateway writes it after accepting the ticket (step 6)."""
    return Connection.objects.create(user=for_user, username=for_user.get_username() if for_user else "gone",
                                     host_pool=pool, state=ConnectionState.STARTED,
                                     ticket_accepted_at=timezone.now())


def reservation(on: SessionHost, for_user, *, seconds_ago: int = 0,
                state: str = ConnectionState.CONNECTING) -> Connection:
    """A connection of ``for_user`` that already holds a slot on ``on``."""
    now = timezone.now()
    return Connection.objects.create(user=for_user, username=for_user.get_username(), host_pool=on.host_pool,
                                     session_host=on, state=state, ticket_accepted_at=now,
                                     host_selected_at=now - timedelta(seconds=seconds_ago))
