"""`manage.py serve` as an operator starts it (a real process)."""
from __future__ import annotations

import json
import urllib.request

import pytest

from testbed.ports import free_port
from testbed.processes import ControlPlane
from wire import rdpfile

pytestmark = pytest.mark.slow

SETUP = """
from django.contrib.auth import get_user_model
from broker.models import HostPool
from feed.models import ApplicationGroup, Assignment, Workspace
user = get_user_model().objects.create_user("alice", "", "correct-horse-battery")
pool = HostPool.objects.create(name="pool-s")
group = ApplicationGroup.objects.create(name="dag-s", group_type="desktop", host_pool=pool,
                                        workspace=Workspace.objects.create(name="ws-s"))
Assignment.objects.create(application_group=group, user=user)
"""
INSTANCES = """
import json
from broker.models import GatewayInstance
print(json.dumps([[i.public_host, i.public_port, i.relay_url] for i in GatewayInstance.objects.all()]))
"""


def test_gateway_listen_alone_moves_the_address_in_files_and_connect_orders(tmp_path):
    port = free_port("127.0.0.1")
    # No WVD_GATEWAY_* at all: only the option says where the gateway is.
    plane = ControlPlane(data_dir=tmp_path / "plane", extra_env={"WVD_GATEWAY_LISTEN": ""},
                         serve_args=["--gateway-listen", f"127.0.0.1:{port}"])
    plane.start()
    try:
        plane.manage("shell", "-c", SETUP)
        instances = json.loads(plane.manage("shell", "-c", INSTANCES).stdout.strip().splitlines()[-1])
        status, signed_in = plane.call("POST", "/api/v1/auth/token/",
                                       {"username": "alice", "password": "correct-horse-battery"})
        assert status == 201, signed_in
        request = urllib.request.Request(plane.base_url + "/feed/rdp/dag-s/desktop.rdp",
                                         headers={"Authorization": f"Bearer {signed_in['token']}"})
        with urllib.request.urlopen(request, timeout=30, context=plane.ssl_context()) as response:
            settings = rdpfile.read_settings(rdpfile.decode(response.read()))
    finally:
        plane.stop()

    assert instances == [["127.0.0.1", port, f"https://127.0.0.1:{port}"]]  # where connect orders send hosts
    assert settings["gatewayhostname"].value == f"127.0.0.1:{port}"  # where clients go
