"""Every Prometheus series the control plane exposes (``wvd_*``), and the listener that serves them.

One module holds them all, so the names an operator's dashboards depend on (docs/metrics.md,
docs/grafana/wvd-dashboard.json) are in one place. The rooms above count where the thing happens:

- the Connection lifecycle (broker/models.py) counts each end once, by the process whose conditional
  UPDATE made it, and observes the setup checkpoints when the relay starts;
- the gateway (gateway/transports/setup.py) hands its relays to ``relay_traffic``, which reads their byte
  counters at scrape time: the relay's per-frame path does nothing more than it did before;
- the host channel (hostagent/consumers.py) keeps the channel gauge and the heartbeat histogram;
- sign-in (core/throttle.py) counts refusals; Celery's signals (wvdportal/celery.py) time tasks.

``WVD_METRICS_LISTEN=host:port`` (settings.METRICS_LISTEN) starts a separate HTTP listener with
``/metrics`` in `serve` and in the Celery worker (``serve_metrics``); never on the public web listener.
A prefork worker counts in its children: it needs ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's
multiprocess mode, read when prometheus_client is first imported), an existing directory of its own whose
earlier files ``serve_metrics`` removes at start.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# Seconds. Setup is tens to hundreds of milliseconds; the host's arrival is bounded at 10-30 s.
SETUP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HEARTBEAT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
TASK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# --- connections (broker/models.py, ConnectionQuerySet) ---------------------------------------------

# The outcome label: how a Connection ended.
SUCCESS = "success"  # finish: its relay ran and ended (ENDED)
FAILED = "failed"  # fail: admitted, then failed with a documented code
REFUSED = "refused"  # refuse: refused at the door (a bad ticket, a user or resource gone)
LOST = "lost"  # ended_with_instance: the gateway instance that held it went away

CONNECTIONS = Counter(
    "wvd_connections", "Connections that ended, by outcome, error code (empty unless failed or refused) and "
    "transport; counted once, by the process whose transition ended the record.",
    ["outcome", "error_code", "transport"],
)
SETUP_SECONDS = Histogram(
    "wvd_connection_setup_seconds", "Seconds from the ticket's acceptance to each setup checkpoint of a "
    "connection whose relay started (host_selected, host_notified, host_connected, relay_started).",
    ["checkpoint"], buckets=SETUP_BUCKETS,
)
CHECKPOINTS = ("host_selected", "host_notified", "host_connected", "relay_started")


def connections_ended(outcome: str, error_code: str, transport: str, count: int) -> None:
    """``count`` connections of ``transport`` took an end (the row count of the transition's UPDATE)."""
    if count > 0:
        CONNECTIONS.labels(outcome=outcome, error_code=error_code, transport=transport or "unknown").inc(count)


def setup_checkpoints(seconds: dict[str, float | None]) -> None:
    """One connection's checkpoints, in seconds after its ticket was accepted (None: not reached)."""
    for checkpoint in CHECKPOINTS:
        value = seconds.get(checkpoint)
        if value is not None:
            SETUP_SECONDS.labels(checkpoint=checkpoint).observe(max(value, 0.0))


# --- host channels (hostagent/consumers.py) ----------------------------------------------------------

HOST_CHANNELS = Gauge(
    "wvd_host_channels_connected", "Host channels whose agent has authenticated, held by this process.",
    multiprocess_mode="livesum",
)
HEARTBEAT_SECONDS = Histogram(
    "wvd_host_heartbeat_lag_seconds", "Seconds from a heartbeat's arrival to its acknowledgement (recording "
    "it included): the server's share of the agent's heartbeat round trip.", buckets=HEARTBEAT_BUCKETS,
)

# --- sign-in (core/throttle.py) ----------------------------------------------------------------------

THROTTLED = "throttled"  # the throttle refused the pair: 429
WRONG_CREDENTIALS = "wrong_credentials"  # a failed password, counted by the throttle
DIRECTORY_UNAVAILABLE = "directory_unavailable"  # the directory did not answer (core/directory.py)

SIGNIN_REFUSALS = Counter(
    "wvd_signin_refusals", "Sign-ins refused: a wrong user name or password, a directory that did not answer, "
    "or a pair the throttle locked out (the 429); credential is password or token (registration tokens, API "
    "tokens), or oidc (core/oidc.py: reason is what went wrong at the provider).",
    ["reason", "credential"],
)

# --- Celery tasks (wvdportal/celery.py connects the signals) ----------------------------------------

TASK_SECONDS = Histogram(
    "wvd_celery_task_seconds", "Seconds a Celery task ran, by task name and state (SUCCESS, FAILURE, RETRY).",
    ["task", "state"], buckets=TASK_BUCKETS,
)
TASK_QUEUE_SECONDS = Histogram(
    "wvd_celery_task_queue_seconds", "Seconds from a task's publication to the start of its run (wall clock "
    "of the two processes).", ["task"], buckets=TASK_BUCKETS,
)


# --- relays (gateway/transports/setup.py) -------------------------------------------------------------


class RelayCounts(Protocol):
    """What relay_traffic reads of a relay (gateway.relay.Relay): its transport and byte counters."""

    transport: str
    bytes_client_to_host: int
    bytes_host_to_client: int

    @property
    def is_ended(self) -> bool: ...

    @property
    def is_paired(self) -> bool: ...


class RelayTraffic(Collector):
    """``wvd_relay_bytes_total{transport,direction}`` and ``wvd_relays_active{transport}``, read from the relays.

    The relay already counts its bytes per read; this folds the growth of each live relay's counters into
    the totals when scraped (on the listener's thread), and the rest when the relay ends, so the totals
    never go back and the per-frame path gains nothing. ``watch`` names where the live relays are.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: Callable[[], Iterable[RelayCounts]] = tuple
        self._totals: dict[tuple[str, str], int] = defaultdict(int)
        self._folded: dict[int, tuple[int, int]] = {}  # id(relay) -> bytes folded each way

    def watch(self, live: Callable[[], Iterable[RelayCounts]]) -> None:
        self._live = live

    def ended(self, relay: RelayCounts) -> None:
        """Fold what the relay moved since the last scrape; it is no longer read after this."""
        with self._lock:
            self._fold(relay)
            self._folded.pop(id(relay), None)

    def _fold(self, relay: RelayCounts) -> None:
        up, down = relay.bytes_client_to_host, relay.bytes_host_to_client
        folded_up, folded_down = self._folded.get(id(relay), (0, 0))
        transport = relay.transport or "unknown"
        self._totals[(transport, "client_to_host")] += up - folded_up
        self._totals[(transport, "host_to_client")] += down - folded_down
        self._folded[id(relay)] = (up, down)

    def collect(self):
        active: dict[str, int] = defaultdict(int)
        with self._lock:
            for relay in list(self._live()):
                # An ended relay is folded by ended(), once: reading it here too could count it twice.
                if relay.is_ended:
                    continue
                self._fold(relay)
                if relay.is_paired:
                    active[relay.transport or "unknown"] += 1
            totals = dict(self._totals)
        relayed = CounterMetricFamily("wvd_relay_bytes", "Bytes relayed by this gateway instance, by transport "
                                      "and direction (client_to_host, host_to_client).",
                                      labels=["transport", "direction"])
        for (transport, direction), value in sorted(totals.items()):
            relayed.add_metric([transport, direction], value)
        yield relayed
        relays = GaugeMetricFamily("wvd_relays_active", "Relays of this instance with both ends attached, by "
                                   "transport.", labels=["transport"])
        for transport, count in sorted(active.items()):
            relays.add_metric([transport], count)
        yield relays

    def describe(self):
        return []  # collected at scrape time only


relay_traffic = RelayTraffic()
REGISTRY.register(relay_traffic)


# --- the listener ------------------------------------------------------------------------------------


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROCESS_DIR_VARIABLE, "").strip()
    return Path(value) if value else None


def serve_metrics(listen: tuple[str, int], process: str, *, multiprocess_mode: bool = False) -> None:
    """Start ``/metrics`` on ``listen`` in a thread of this process (``process`` names it in the log).

    Raises OSError when the address cannot be bound. ``multiprocess_mode`` (a prefork worker, with
    PROMETHEUS_MULTIPROC_DIR): expose what every process of the directory counted, after removing what
    earlier runs left there; call it in the parent before it forks. Otherwise this process's own counts
    (`serve` always: its relays and channels are its own).
    """
    host, port = listen
    directory = multiprocess_dir() if multiprocess_mode else None
    if directory is None:
        registry: CollectorRegistry = REGISTRY
    else:
        own = f"_{os.getpid()}.db"
        for stale in directory.glob("*.db"):  # a previous run's counts would add to ours (not this process's)
            if not stale.name.endswith(own):
                stale.unlink()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr=host, registry=registry)
    log.info("%s: metrics on http://%s:%s/metrics%s", process, f"[{host}]" if ":" in host else host, port,
             f" (multiprocess, {directory})" if directory is not None else "")


def child_exited(pid: int) -> None:
    """A prefork child is gone: its live gauges no longer count (multiprocess mode only)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)
