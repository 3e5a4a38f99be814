"""A worker that dies holding a task does not lose it: with the broker options of wvdportal/settings.py, Redis
gives the task to the next worker once it is older than half the client's wait for its host, not after
kombu's default hour. Against a private redis-server (testbed/cluster.py), as a worker uses it."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from django.conf import settings
from kombu import Connection, Exchange, Queue

from testbed.cluster import PrivateRedis

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")]


@pytest.fixture
def redis_url(tmp_path: Path):
    server = PrivateRedis(tmp_path / "redis", tmp_path / "redis.log")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def test_a_task_taken_by_a_worker_that_died_goes_back_to_the_queue_within_the_clients_wait(redis_url: str):
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    visibility = options["visibility_timeout"]
    assert visibility < settings.GATEWAY_HOST_ARRIVAL_TIMEOUT  # back while the client still waits
    queue = Queue("wvd.tasks", Exchange("wvd.tasks"), "wvd.tasks")

    with Connection(redis_url, transport_options=options) as producer:
        producer.Producer().publish({"connection": 7}, exchange=queue.exchange, routing_key="wvd.tasks",
                                    declare=[queue], serializer="json")

    # The worker takes it (unacknowledged, as with acks late) and dies: its connection is never closed, so
    # nothing is handed back on the way out.
    dead = Connection(redis_url, transport_options=options)
    taken = dead.SimpleQueue(queue).get(timeout=5)
    assert taken.payload == {"connection": 7}
    taken_at = time.monotonic()

    with Connection(redis_url, transport_options=options) as survivor:
        channel = survivor.default_channel
        channel.qos.restore_visible(num=options.get("unacked_restore_limit"),
                                    interval=options["unacked_restore_throttle"])
        assert channel.client.llen("wvd.tasks") == 0  # too young: the worker may still be on it
        while time.monotonic() - taken_at <= visibility:
            time.sleep(0.2)
        channel.qos.restore_visible(num=options.get("unacked_restore_limit"),
                                    interval=options["unacked_restore_throttle"])
        again = survivor.SimpleQueue(queue).get(timeout=5)
        assert again.payload == {"connection": 7}
        again.ack()
    dead.release()
