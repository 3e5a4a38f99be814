"""The Celery app. Without WVD_REDIS_URL tasks run eagerly in the calling process.

Its signals feed core/metrics.py: each task's run time and wait in the queue, in whichever process runs it
(the worker's, or `serve` when eager); a worker with WVD_METRICS_LISTEN serves /metrics from its main
process (a prefork pool counts in its children: PROMETHEUS_MULTIPROC_DIR, docs/metrics.md).
"""
from __future__ import annotations

import os
import time

from celery import Celery, signals
from django.conf import settings

from core import metrics

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wvdportal.settings")

app = Celery("wvdportal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

PUBLISHED_AT_HEADER = "wvd_published_at"
# Pools whose tasks run in the worker's own process: its registry sees them without multiprocess mode.
IN_PROCESS_POOLS = {"solo", "thread"}  # --pool=solo, --pool=threads
_started: dict[str, float] = {}


@signals.celeryd_after_setup.connect
def start_metrics_listener(sender=None, instance=None, **kwargs) -> None:
    """In the worker's main process, before a prefork pool forks: /metrics on WVD_METRICS_LISTEN."""
    if settings.METRICS_LISTEN is None:
        return
    pool_name = pool_kind(instance)
    if metrics.multiprocess_dir() is None and pool_name not in IN_PROCESS_POOLS:
        # Not a log line and on: each child would count alone and the listener would show none of it.
        raise SystemExit(
            f"WVD_METRICS_LISTEN: a {pool_name or 'prefork'} worker counts in its child processes; set "
            f"{metrics.MULTIPROCESS_DIR_VARIABLE} to an empty directory of this worker's own, or run it with "
            "--pool=solo or --pool=threads (docs/metrics.md)")
    try:
        metrics.serve_metrics(settings.METRICS_LISTEN, f"celery worker ({pool_name} pool)",
                              multiprocess_mode=metrics.multiprocess_dir() is not None)
    except OSError as exc:
        raise SystemExit(f"WVD_METRICS_LISTEN: cannot listen on {settings.METRICS_LISTEN[0]}:"
                         f"{settings.METRICS_LISTEN[1]}: {exc.strerror or exc}") from None


def pool_kind(worker) -> str:
    """The worker's pool: prefork, solo, threads, eventlet, gevent."""
    pool = getattr(worker, "pool_cls", None)
    module = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    return module.rsplit(".", 1)[-1].rsplit(":", 1)[0]


@signals.worker_process_shutdown.connect
def forget_child(pid=None, **kwargs) -> None:
    metrics.child_exited(pid or os.getpid())


@signals.before_task_publish.connect
def stamp_publication(headers=None, **kwargs) -> None:
    if headers is not None:
        headers[PUBLISHED_AT_HEADER] = time.time()


@signals.task_prerun.connect
def task_started(task_id=None, task=None, **kwargs) -> None:
    _started[task_id] = time.monotonic()
    published = getattr(task.request, PUBLISHED_AT_HEADER, None) if task is not None else None
    if isinstance(published, (int, float)):
        metrics.TASK_QUEUE_SECONDS.labels(task=task.name).observe(max(time.time() - published, 0.0))


@signals.task_postrun.connect
def task_ended(task_id=None, task=None, state=None, **kwargs) -> None:
    started = _started.pop(task_id, None)
    if started is not None and task is not None:
        metrics.TASK_SECONDS.labels(task=task.name, state=state or "UNKNOWN").observe(time.monotonic() - started)
