"""End to end: xfreerdp 2.11 reads a served .rdp file and presents its ticket to the gateway it names."""
from __future__ import annotations

import pytest

from core.tickets import verify_connection_ticket
from tests.e2e.recording_gateway import RecordingGateway, record_rdp_file
from tests.feed.conftest import rdp_settings


@pytest.mark.e2e
def test_xfreerdp_follows_a_served_file_to_its_gateway_with_the_served_ticket(
        xvfb, member, member_api, desktop_group, signing_ca, settings, tmp_path):
    with RecordingGateway() as gateway:
        # The file itself must send the client to the recorder: no /g: override.
        settings.GATEWAY_PUBLIC_HOST, settings.GATEWAY_PUBLIC_PORT = gateway.host, gateway.port
        response = member_api.get("/feed/rdp/dag-a/desktop.rdp")
        assert response.status_code == 200, response.content
        served = tmp_path / "desktop.rdp"
        served.write_bytes(response.content)

        recording = record_rdp_file(served, recorder=gateway)

    ticket = rdp_settings(response.content)["gatewayaccesstoken"]
    assert recording.error is None, recording.client_output
    assert recording.method == "RDG_OUT_DATA"
    assert recording.headers["rdg-auth-scheme"] == "PAA"
    assert recording.paa_token == ticket
    claims = verify_connection_ticket(recording.paa_token)
    assert (claims.user_id, claims.resource, claims.host_pool_name) == (member.pk, "dag-a/desktop", "pool-a")
