"""The Celery worker's /metrics (wvdportal/celery.py): served from its main process on WVD_METRICS_LISTEN; a
prefork worker without PROMETHEUS_MULTIPROC_DIR refuses to start rather than show counts its children
never report. (Counting in a prefork pool's children: tests/metrics/test_scrape.py, with Redis.)"""
from __future__ import annotations

import http.client
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from testbed.lifecycle import read_log, start_logged, stop_group
from testbed.ports import free_port
from testbed.processes import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def worker(pool: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "wvdportal", "worker", f"--pool={pool}", "-c", "1", "-l", "info",
            "--without-gossip", "--without-mingle"]


def environment(tmp_path, **more: str) -> dict[str, str]:
    # No WVD_REDIS_URL: the in-memory broker, enough for a worker to start and serve its metrics.
    return {"PATH": "/usr/bin:/bin", "WVD_DATA_DIR": str(tmp_path), **more}


def test_a_prefork_worker_without_a_multiprocess_directory_refuses_to_start(tmp_path):
    port = free_port("127.0.0.1")
    done = subprocess.run(worker("prefork"), cwd=REPO_ROOT, capture_output=True, text=True, timeout=90,
                          env=environment(tmp_path, WVD_METRICS_LISTEN=f"127.0.0.1:{port}"))
    assert done.returncode != 0
    assert ("WVD_METRICS_LISTEN: a prefork worker counts in its child processes; set PROMETHEUS_MULTIPROC_DIR"
            in done.stdout + done.stderr)


def test_a_solo_worker_serves_its_metrics_on_its_own_listener(tmp_path):
    port = free_port("127.0.0.1")
    log = tmp_path / "worker.log"
    process = start_logged(worker("solo"), log, cwd=REPO_ROOT,
                           env=environment(tmp_path, WVD_METRICS_LISTEN=f"127.0.0.1:{port}"))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/metrics")
                response = conn.getresponse()
                body = response.read().decode()
                conn.close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, read_log(log)
                time.sleep(0.2)
        assert response.status == 200
        families = {family.name: family.type for family in text_string_to_metric_families(body)}
        assert families["wvd_connections"] == "counter"
        assert families["wvd_celery_task_seconds"] == "histogram"
    finally:
        stop_group(process, grace=10)
