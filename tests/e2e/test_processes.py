"""The control plane runs as real processes and stops without leaving any behind."""
from __future__ import annotations

import os
import signal
from urllib.parse import urlsplit

import pytest

from testbed.lifecycle import pid_alive
from testbed.processes import ControlPlane, maintenance_url

pytestmark = pytest.mark.slow

ISSUE_TOKEN = (
    "from django.contrib.auth import get_user_model;"
    "from core.models import ApiToken;"
    "u = get_user_model().objects.create_user('e2e-admin', password='x' * 20, is_staff=True, is_superuser=True);"
    "print(ApiToken.issue(u, description='e2e')[1])"
)


def test_the_control_plane_serves_http_and_stops_leaving_no_process_behind():
    plane = ControlPlane()
    plane.start()
    try:
        pids = plane.pids()
        assert plane.get("/admin/login/")[0] == 200
        status, headers, _ = plane.get("/api/v1/")
        assert status == 401
        assert "www-authenticate" in headers
        # manage() shares the plane's database: a token it issues opens the API served by `serve`.
        key = plane.manage("shell", "--no-imports", "-c", ISSUE_TOKEN).stdout.strip()
        assert plane.get("/api/v1/", headers={"Authorization": f"Bearer {key}"})[0] == 200
        assert set(plane.logs()) == ({"serve", "worker"} if plane.uses_redis else {"serve"})
    finally:
        plane.stop()

    assert plane.leftover_pids() == set()
    assert not any(pid_alive(pid) for pid in pids)
    assert -signal.SIGKILL not in plane.exit_codes.values(), plane.failure_report()
    assert not plane.data_dir.exists()


@pytest.mark.skipif(
    urlsplit(os.environ.get("WVD_DATABASE_URL", "")).scheme not in {"postgres", "postgresql", "pgsql"},
    reason="runs where the tests use PostgreSQL (WVD_DATABASE_URL=postgres://...)",
)
def test_each_plane_gets_a_fresh_postgres_database_dropped_on_stop():
    import psycopg

    with ControlPlane() as plane:
        name = plane.database_name
        assert name.startswith("wvd_e2e_")
        assert urlsplit(plane.env["WVD_DATABASE_URL"]).path == f"/{name}"
        with psycopg.connect(plane.env["WVD_DATABASE_URL"]) as conn:
            assert conn.execute("SELECT count(*) FROM django_migrations").fetchone()[0] > 0

    with psycopg.connect(maintenance_url(os.environ["WVD_DATABASE_URL"])) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None


def test_a_plane_uses_its_own_data_dir_and_sqlite_file_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("WVD_DATABASE_URL", raising=False)
    monkeypatch.delenv("WVD_REDIS_URL", raising=False)

    with ControlPlane(data_dir=tmp_path / "plane") as plane:
        assert "WVD_DATABASE_URL" not in plane.env
        assert plane.env["WVD_DATA_DIR"] == str(tmp_path / "plane")
        assert (tmp_path / "plane" / "wvd.sqlite3").stat().st_size > 0
        assert plane.get("/admin/login/")[0] == 200
