"""The process harness the tests and the benchmarks share: real processes on loopback, stopped by their ids.

* ``processes``: the control plane as real processes (``ControlPlane``: migrate, ``serve`` on HTTPS, and a
  Celery worker with Redis), each on a fresh data dir and database; its clients trust the plane's own CA.
* ``cluster``: the production shape (``Cluster``): N ``serve`` instances behind nginx, a Celery worker and
  beat, a private PostgreSQL and Redis, host agents; started from the systemd units in docs/deploy/systemd.
* ``ports``: free loopback ports, and who listens on one (read from /proc).
* ``lifecycle``: start a child in its own process group with its output in a log file; stop it, its group
  and its descendants.
* ``api``: one JSON request to the control plane's REST API (``call``).
* ``xrdp``: the xrdp + FreeRDP test bed (``XrdpServer``, ``Xvfb``, ``run_xfreerdp``).
* ``rdpbitmap_vectors``: real xrdp bitmap PDUs and their rewrites (tests/wire/test_rdpbitmap.py, bench/browser.py).

Plain functions and classes, no pytest: the fixtures and skip markers built on them live in ``tests/``,
and the benchmarks in ``bench/`` use them directly. Nothing here imports ``tests`` or ``bench``.
Linux only (it reads /proc), like the machines the suite and the benchmarks run on.
"""
