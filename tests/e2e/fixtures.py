"""Pytest fixtures for the real-stack tests, over the harness in ``testbed/``; import them into any
conftest.py that needs them:

    from tests.e2e.fixtures import *  # noqa: F403

That brings the fixtures and the hook that adds the logs of every real process a failed test used to
its report. ``tests/e2e/conftest.py`` does exactly that.

All but ``xrdp_server``: the whole test session shares one xrdp bed (it holds the machine's bed lock while it
runs), so ``tests/conftest.py`` registers it once for every folder. A second registration, in another
conftest or test module, would start a second bed that waits for the first's lock and fails.
"""
from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from testbed.processes import ControlPlane
from testbed.xrdp import (
    FREERDP3,
    FREERDP3_INSTALL_HINT,
    REQUIRED_TOOLS,
    TestBedError,
    XrdpServer,
    Xvfb,
    tools_available,
)

__all__ = ["xvfb", "control_plane", "pytest_runtest_makereport"]  # xrdp_server: tests/conftest.py


# FreeRDP 3 comes from bookworm-backports on Debian 12: its tests are skipped, with the install line, where
# it is missing (FreeRDP 2's tests still run).
needs_freerdp3 = pytest.mark.skipif(shutil.which(FREERDP3) is None,
                                    reason=f"xfreerdp3 is missing; install it with: {FREERDP3_INSTALL_HINT}")


def skip_unless_tools(tools: tuple[str, ...] = REQUIRED_TOOLS, *, need_root: bool = True) -> None:
    """Skip the calling test (or fixture) with a plain message when the bed's tools are missing."""
    ok, reason = tools_available(tools, need_root=need_root)
    if not ok:
        pytest.skip(f"xrdp/FreeRDP test bed unavailable: {reason}")


@pytest.fixture(scope="session")
def xrdp_server() -> Iterator[XrdpServer]:
    """xrdp + sesman on a free loopback port, sessions living 1 s; skipped where the tools are missing."""
    skip_unless_tools()
    server = XrdpServer(session_seconds=1.0)
    refusal = ""
    try:
        server.start()
    except TestBedError as exc:
        refusal = str(exc)  # reported outside the except block: no chained traceback in the report
    if refusal:
        # Not a skip: the tools are there, so this machine is expected to run the bed.
        pytest.fail(refusal, pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def xvfb() -> Iterator[Xvfb]:
    """A virtual X display for xfreerdp; sets DISPLAY for this process while it runs."""
    skip_unless_tools(("Xvfb", "xfreerdp"), need_root=False)
    with Xvfb() as display:
        yield display


@pytest.fixture
def control_plane(tmp_path) -> Iterator[ControlPlane]:
    """The control plane as real processes (migrate, serve, and a Celery worker when Redis is set)."""
    plane = ControlPlane(data_dir=tmp_path / "wvd-data")
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    # Any fixture value with a failure_report() (servers, control planes) adds its logs.
    if report.when == "call" and report.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            failure_report = getattr(value, "failure_report", None)
            if callable(failure_report):
                report.sections.append((f"logs of {name}", failure_report()))
    return report
