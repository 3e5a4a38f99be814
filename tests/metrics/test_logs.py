"""JSON log lines (WVD_LOG_FORMAT=json, core/logcontext.py): one object per line, with the activity id on
the lines logged while a connection is handled; the plain format stays as it was; /metrics is never on
the web listener."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import subprocess
import sys

import pytest
from asgiref.sync import sync_to_async

from core.logcontext import ActivityFilter, JsonFormatter, for_activity, set_activity
from testbed.processes import REPO_ROOT

ACTIVITY = "6f1c2d3e-0000-4000-8000-000000000001"


@pytest.fixture
def logged():
    """A logger whose records go through the console handler's filter and the JSON formatter."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ActivityFilter())
    logger = logging.getLogger("tests.metrics.json")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, out
    logger.removeHandler(handler)


def lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_time_level_logger_and_message(logged):
    logger, out = logged
    logger.warning("host %s disconnected", "h1", extra={"code": 1006})
    [line] = lines(out)
    assert {k: line[k] for k in ("level", "logger", "message", "code")} == {
        "level": "WARNING", "logger": "tests.metrics.json", "message": "host h1 disconnected", "code": 1006}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["time"])
    assert "activity_id" not in line


def test_lines_logged_while_a_connection_is_handled_carry_its_activity_id(logged):
    logger, out = logged
    with for_activity(ACTIVITY):
        logger.info("relay started")
    logger.info("after")
    assert [line.get("activity_id") for line in lines(out)] == [ACTIVITY, None]


async def test_the_activity_follows_a_task_into_the_threads_it_hands_work_to(logged):
    logger, out = logged

    async def handle_one_client() -> None:
        set_activity(ACTIVITY)
        await sync_to_async(logger.info, thread_sensitive=False)("recorded in a worker thread")

    await asyncio.create_task(handle_one_client())  # a task of its own, as each gateway client is
    logger.info("the listener's own line")
    assert [line.get("activity_id") for line in lines(out)] == [ACTIVITY, None]


def test_an_exception_is_one_line_with_its_traceback_as_text(logged):
    logger, out = logged
    try:
        raise ValueError("bad frame")
    except ValueError:
        logger.exception("closing")
    [line] = lines(out)
    assert "ValueError: bad frame" in line["exc_info"]


def run_manage_shell(tmp_path, **env: str) -> subprocess.CompletedProcess:
    code = "import logging; logging.getLogger('gateway.test').warning('hello from %s', 'settings')"
    return subprocess.run([sys.executable, str(REPO_ROOT / "manage.py"), "shell", "--no-imports", "-c", code],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "WVD_DATA_DIR": str(tmp_path), **env})


def test_the_setting_switches_every_line_to_json(tmp_path):
    done = run_manage_shell(tmp_path, WVD_LOG_FORMAT="json")
    assert done.returncode == 0, done.stderr
    [line] = [json.loads(text) for text in done.stderr.splitlines() if "hello" in text]
    assert (line["logger"], line["message"]) == ("gateway.test", "hello from settings")


def test_the_default_format_is_unchanged(tmp_path):
    done = run_manage_shell(tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING gateway.test: hello from settings$",
                     done.stderr, re.MULTILINE), done.stderr


def test_an_unknown_format_is_refused_by_name(tmp_path):
    done = run_manage_shell(tmp_path, WVD_LOG_FORMAT="xml")
    assert done.returncode != 0
    assert "WVD_LOG_FORMAT='xml' is not one of plain, json" in done.stderr


@pytest.mark.django_db
def test_the_web_side_has_no_metrics_page(client):
    response = client.get("/metrics")
    assert response.status_code == 404
    assert b"wvd_connections" not in response.content
