"""GET /feed/rdp/<group>/<alias>.rdp: a signed file per user and download, with a fresh ticket."""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization

from broker.models import HostPool
from core.tickets import TicketRefused, verify_connection_ticket
from feed.rdpsign import SIGNATURE_PREFIX, check_rdp_signature, signing_message
from tests.feed.conftest import rdp_settings
from wire import rdpfile

DESKTOP_URL = "/feed/rdp/dag-a/desktop.rdp"
APP_URL = "/feed/rdp/rag-a/notepad.rdp"


@pytest.fixture
def served(member_api, desktop_group, signing_ca) -> bytes:
    response = member_api.get(DESKTOP_URL)
    assert response.status_code == 200, response.content
    return response.content


def test_the_file_is_utf16le_with_bom_and_served_as_an_attachment(member_api, desktop_group, signing_ca):
    response = member_api.get(DESKTOP_URL)

    assert response["Content-Type"] == "application/x-rdp"
    assert response["Content-Disposition"] == 'attachment; filename="Office desktop.rdp"'
    assert response["Cache-Control"] == "private, no-store"
    assert response.content.startswith(b"\xff\xfe")
    assert rdpfile.decode(response.content).startswith("full address:s:pool-a\r\n")


def test_the_desktop_file_routes_through_the_configured_gateway(served, settings):
    values = rdp_settings(served)

    assert values["full address"] == values["alternate full address"] == "pool-a"
    assert values["gatewayhostname"] == f"{settings.GATEWAY_PUBLIC_HOST}:{settings.GATEWAY_PUBLIC_PORT}"
    assert (values["gatewayusagemethod"], values["gatewaycredentialssource"]) == ("1", "5")
    assert values["remoteapplicationmode"] == "0"
    assert values["workspace id"] == settings.FEED_PUBLISHER_ID


def test_the_gateway_address_comes_from_the_settings(member_api, desktop_group, signing_ca, settings):
    settings.GATEWAY_PUBLIC_HOST, settings.GATEWAY_PUBLIC_PORT = "gw.example.net", 443

    values = rdp_settings(member_api.get(DESKTOP_URL).content)

    assert values["gatewayhostname"] == "gw.example.net:443"


def test_the_ticket_in_the_file_verifies_and_names_user_and_resource(served, member, desktop_group):
    ticket = verify_connection_ticket(rdp_settings(served)["gatewayaccesstoken"])

    assert (ticket.user_id, ticket.username) == (member.pk, "member")
    assert (ticket.application_group_id, ticket.resource) == (desktop_group.pk, "dag-a/desktop")
    assert (ticket.host_pool_id, ticket.host_pool_name) == (desktop_group.host_pool_id, "pool-a")


def test_every_download_carries_a_fresh_ticket(member_api, served):
    again = member_api.get(DESKTOP_URL).content

    first, second = (verify_connection_ticket(rdp_settings(data)["gatewayaccesstoken"]) for data in (served, again))
    assert first.jti != second.jti


def test_the_served_ticket_is_refused_once_expired(served, settings):
    ticket = verify_connection_ticket(rdp_settings(served)["gatewayaccesstoken"])
    assert ticket.expires_at - ticket.issued_at == settings.CONNECTION_TICKET_LIFETIME

    with pytest.raises(TicketRefused) as refused:
        verify_connection_ticket(rdp_settings(served)["gatewayaccesstoken"],
                                 now=ticket.expires_at + timedelta(seconds=1))
    assert refused.value.reason_code == "expired"


def test_a_tampered_served_ticket_is_refused(served):
    token = rdp_settings(served)["gatewayaccesstoken"]
    kind, payload, signature = token.split(".")
    # Another user's id in the payload, the original signature kept.
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["u"] += 1
    forged = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).rstrip(b"=").decode()

    with pytest.raises(TicketRefused) as refused:
        verify_connection_ticket(f"{kind}.{forged}.{signature}")
    assert refused.value.reason_code == "bad_signature"


def test_the_remoteapp_file_launches_the_app(member_api, apps_through_group, signing_ca):
    response = member_api.get(APP_URL)

    values = rdp_settings(response.content)
    assert response["Content-Disposition"] == 'attachment; filename="Notepad.rdp"'
    assert values["remoteapplicationmode"] == "1"
    assert values["remoteapplicationprogram"] == values["alternate shell"] == r"C:\Windows\System32\notepad.exe"
    assert values["remoteapplicationname"] == "Notepad"
    assert verify_connection_ticket(values["gatewayaccesstoken"]).resource == "rag-a/notepad"


def test_the_pools_custom_properties_are_merged_and_signed(member_api, desktop_group, signing_ca):
    HostPool.objects.filter(pk=desktop_group.host_pool_id).update(
        custom_rdp_properties="audiomode:i:2\nredirectprinters:i:0\nuse multimon:i:1")

    data = member_api.get(DESKTOP_URL).content

    values = rdp_settings(data)
    assert (values["audiomode"], values["redirectprinters"], values["use multimon"]) == ("2", "0", "1")
    assert rdpfile.decode(data).count("audiomode:") == 1  # replaced the default, not added twice
    scope = values["signscope"].split(",")
    assert "AudioMode" in scope and "RedirectPrinters" in scope
    check_rdp_signature(data, signing_ca)


def test_the_signature_chains_to_our_ca(served, signing_ca):
    signer = check_rdp_signature(served, signing_ca)

    assert signer.issuer == signing_ca.subject


@pytest.fixture
def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("openssl is not installed")
    return path


def test_openssl_cms_verify_accepts_the_signature_of_a_served_file(served, signing_ca, openssl, tmp_path):
    lines = rdpfile.decode(served).splitlines()
    signature = next(line for line in lines if line.startswith(SIGNATURE_PREFIX))
    blob = base64.b64decode(signature[len(SIGNATURE_PREFIX):].replace(" ", ""))
    # The verifier's side: rebuild the message from the file as served, without the signature line.
    _, message = signing_message([line for line in lines if line != signature])
    (tmp_path / "sig.p7s").write_bytes(blob[12:])
    (tmp_path / "msg.bin").write_bytes(message)
    (tmp_path / "ca.pem").write_bytes(signing_ca.public_bytes(serialization.Encoding.PEM))

    result = subprocess.run(
        [openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", "sig.p7s", "-content", "msg.bin",
         "-CAfile", "ca.pem", "-purpose", "any", "-out", "/dev/null"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr


def test_another_users_resource_is_404(outsider_api, desktop_group, signing_ca):
    response = outsider_api.get(DESKTOP_URL)

    assert response.status_code == 404
    assert response.json()["detail"] == "No such desktop or RemoteApp is assigned to you."


@pytest.mark.parametrize("url", ["/feed/rdp/dag-a/notepad.rdp", "/feed/rdp/nope/desktop.rdp",
                                 "/feed/rdp/rag-a/desktop.rdp"])
def test_unknown_resources_are_404(member_api, desktop_group, apps_through_group, signing_ca, url):
    assert member_api.get(url).status_code == 404


def test_anonymous_downloads_get_a_bearer_challenge(anonymous_api, desktop_group):
    response = anonymous_api.get(DESKTOP_URL)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_the_browser_session_may_download(client, member, desktop_group, signing_ca):
    client.force_login(member)

    assert client.get(DESKTOP_URL).status_code == 200


def test_without_a_ca_the_download_says_why_instead_of_failing(member_api, desktop_group, settings, tmp_path):
    settings.DATA_DIR = tmp_path  # no ca/ in it

    response = member_api.get(DESKTOP_URL)

    assert response.status_code == 503
    assert "certificate authority" in response.json()["detail"]


def test_stored_custom_properties_that_no_longer_validate_give_503_and_a_log_line(
        member_api, desktop_group, signing_ca, caplog):
    # Written past the model's validation (e.g. by SQL): the file must not be served without them.
    HostPool.objects.filter(pk=desktop_group.host_pool_id).update(custom_rdp_properties="gatewayhostname:s:evil")

    response = member_api.get(DESKTOP_URL)

    assert response.status_code == 503
    assert any("cannot build the .rdp file" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(("title", "name"), [
    ("Payroll\u202egpj.exe", "Payroll gpj.exe.rdp"),  # a right-to-left override would show "exe.jpg"
    ("Office\u200b desktop\u2066", "Office desktop.rdp"),  # zero-width space, isolate
    ("a/b:c*d?e", "a b c d e.rdp"),
])
def test_the_download_name_keeps_no_invisible_or_unsafe_characters(member_api, desktop_group, signing_ca, title, name):
    type(desktop_group.desktop).objects.filter(pk=desktop_group.desktop.pk).update(friendly_name=title)

    response = member_api.get(DESKTOP_URL)

    assert response["Content-Disposition"] == f'attachment; filename="{name}"'
