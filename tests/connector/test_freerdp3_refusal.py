"""FreeRDP 3.10 on the raw WebSocket transport hears a refusal that comes after the upgrade: the gateway's
real listener (in process, TLS from a test CA the client trusts) and the real ``xfreerdp3``.

FreeRDP 3.10 ignores a WebSocket close, a FIN and a reset once the upgrade is answered (it waits until
killed); the gateway therefore answers its X.224 Connection Request with a Disconnect Request first
(wire/x224.py). The upgrade is held while the host is awaited (wst.UPGRADE_HOLD), so this path is
only reached by a host slower than the hold: here the hold is shortened and the host never comes.
"""
from __future__ import annotations

import asyncio
import shutil

import pytest

from gateway.transports import wst
from testbed.xrdp import EXIT_TIMEOUT, FREERDP3, FREERDP3_INSTALL_HINT, run_xfreerdp
from tests.connector.gatewaybed import (  # noqa: F401  (fixtures)
    Bed,
    bed,
    concurrent_sqlite,
    eager_tasks,
    estate_rows,
    in_memory_channel_layer,
)
from tests.e2e.fixtures import xvfb  # noqa: F401  (a fixture)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which(FREERDP3) is None,
                       reason=f"xfreerdp3 is missing; install it with: {FREERDP3_INSTALL_HINT}"),
]


async def test_freerdp3_ends_by_itself_when_the_gateway_refuses_after_the_upgrade(bed: Bed, gateway_tls, xvfb,
                                                                                  monkeypatch):
    monkeypatch.setattr(wst, "UPGRADE_HOLD", 0.2)
    await bed.simulated.stop()  # the host never dials in
    bed.server.config.host_arrival_timeout = 1.5
    url = f"/gateway:url:wss://127.0.0.1:{bed.port}/remoteDesktopGateway/,bearer:{bed.ticket()}"

    code, output = await asyncio.to_thread(
        run_xfreerdp, ["/v:pool-a", url, "/u:someone", "/p:anything"],
        20, client=FREERDP3, ca_file=gateway_tls.ca_file)

    assert code != EXIT_TIMEOUT, output  # it stopped by itself; before the X.224 answer it hung until killed
    assert "X224_TPDU_CONNECTION_CONFIRM" in output, output
    assert (await bed.last_connection()).error_code == "ConnectionFailedReverseConnectTimeout"
