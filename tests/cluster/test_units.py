"""The systemd units of docs/deploy/systemd are what the cluster harness runs: it builds each process's command
and environment from its unit (testbed/cluster.py, ``Unit``), so the documented shape and the tested one
cannot drift apart. Quick: nothing is started here."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from testbed.cluster import BEAT_UNIT, SERVE_UNIT, UNIT_FILES, UNITS_DIR, WORKER_UNIT, ClusterError, Unit
from testbed.processes import REPO_ROOT

DEPLOY_DOC = REPO_ROOT / "docs" / "deploy.md"


def test_the_harness_runs_every_documented_unit_and_the_docs_name_each():
    assert sorted(path.name for path in UNITS_DIR.iterdir()) == sorted(UNIT_FILES)
    text = DEPLOY_DOC.read_text()
    for name in UNIT_FILES:
        assert f"docs/deploy/systemd/{name}" in text


def test_a_serve_instance_is_named_after_the_template_instance_and_serves_behind_the_proxy():
    argv, env = Unit.read(SERVE_UNIT).command({"WVD_DATA_DIR": "/srv/wvd"}, instance="gw7")
    assert argv == [sys.executable, str(REPO_ROOT / "manage.py"), "serve", "--web-plain"]
    assert env == {"WVD_DATA_DIR": "/srv/wvd", "WVD_GATEWAY_INSTANCE_NAME": "gw7"}


def test_the_worker_and_beat_run_celery_on_the_project_app():
    worker, _ = Unit.read(WORKER_UNIT).command({})
    assert worker[:5] == [sys.executable, "-m", "celery", "-A", "wvdportal"] and worker[5] == "worker"
    assert "worker@%h" in worker  # systemd's %% is a literal %: Celery's own host name placeholder

    beat, _ = Unit.read(BEAT_UNIT).command({"STATE_DIRECTORY": "/var/lib/wvd-beat"})
    assert beat[5] == "beat" and beat[-2:] == ["-s", "/var/lib/wvd-beat/celerybeat-schedule"]


def test_the_workers_prefork_pool_counts_its_metrics_in_a_runtime_directory_made_empty_at_each_start(tmp_path: Path):
    stale = tmp_path / "wvd-worker-metrics" / "counter_123.db"
    stale.parent.mkdir()
    stale.write_bytes(b"a previous run's counts")
    _, env = Unit.read(WORKER_UNIT).command({}, runtime_root=tmp_path)
    assert env["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path / "wvd-worker-metrics")
    assert list((tmp_path / "wvd-worker-metrics").iterdir()) == []
    # On a real machine: systemd's runtime root.
    assert Unit.read(WORKER_UNIT).command({})[1]["PROMETHEUS_MULTIPROC_DIR"] == "/run/wvd-worker-metrics"


def test_a_unit_needing_what_the_harness_cannot_give_is_refused(tmp_path: Path):
    (tmp_path / "odd.service").write_text("[Service]\nExecStart=/opt/wvd/.venv/bin/python %h/run\n")
    with pytest.raises(ClusterError, match="%h"):
        Unit.read("odd.service", tmp_path).command({})
    (tmp_path / "beat.service").write_text("[Service]\nExecStart=/bin/true -s ${STATE_DIRECTORY}/x\n")
    with pytest.raises(ClusterError, match="STATE_DIRECTORY"):
        Unit.read("beat.service", tmp_path).command({})
    (tmp_path / "empty.service").write_text("[Service]\nType=simple\n")
    with pytest.raises(ClusterError, match="no ExecStart"):
        Unit.read("empty.service", tmp_path)
