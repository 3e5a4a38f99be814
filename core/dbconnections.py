"""Database connections and the threads that hold them.

Kept PostgreSQL connections (``WVD_DATABASE_CONN_MAX_AGE``) pay off in the threads that live as long as the
process: Channels' one database thread, which every host channel's heartbeat queues for, and the gateway's
worker threads. A web request under ASGI runs its synchronous code in a thread of its own that ends with
the request (asgiref's ThreadSensitiveContext): a connection kept past the request is never used again and
stays open until the garbage collector finds it (measured: ten requests, ten backends left open). So a web
request closes its connections when it finishes, as it would with CONN_MAX_AGE = 0.
"""
from __future__ import annotations

from django.core.signals import request_finished
from django.db import connections


def close_request_connections(**kwargs: object) -> None:
    """At the end of a web request, in its thread: close what it opened (the health check and the reuse are
    for the long-lived threads)."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:  # an outer transaction (a test's) is its owner's to end
            connection.close()


def connect() -> None:
    request_finished.connect(close_request_connections, dispatch_uid="wvd-close-request-connections")
