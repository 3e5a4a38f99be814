"""The feed's .rdp files (PROTOCOLS.md §1.4): exact lines, merged pool properties, signing."""
from __future__ import annotations

import pytest

from broker.rdpproperties import RESERVED_PROPERTIES, RdpPropertiesError, RdpProperty, parse_rdp_properties
from feed.choices import ApplicationGroupType
from feed.rdpfile import (
    DEFAULT_SETTINGS,
    DESKTOP,
    REMOTEAPP,
    RdpFileError,
    RdpResource,
    build_rdp,
    render_signed_rdp,
)
from feed.rdpsign import verify_rdp_signature
from wire import rdpfile

TICKET = "wvdt_eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJtZW1iZXIifQ.c2lnbmF0dXJl"
WORKSPACE_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
DESKTOP_RESOURCE = RdpResource(kind=DESKTOP, alias="dag-a", title="Office desktop")
NOTEPAD = RdpResource(kind=REMOTEAPP, alias="notepad", title="Notepad")


def _build(resource=DESKTOP_RESOURCE, **overrides) -> str:
    arguments = dict(routing_name="pool-a.hosts.example.net", gateway_host="gw.example.net", gateway_port=443,
                     access_token=TICKET, workspace_id=WORKSPACE_ID, resource=resource)
    arguments.update(overrides)
    return build_rdp(**arguments)


def _lines(text: str) -> list[str]:
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    return text[:-2].split("\r\n")


def test_the_desktop_file_has_exactly_the_recommended_lines():
    assert _lines(_build()) == [
        "full address:s:pool-a.hosts.example.net",
        "alternate full address:s:pool-a.hosts.example.net",
        "server port:i:3389",
        "gatewayhostname:s:gw.example.net:443",
        "gatewayusagemethod:i:1",
        "gatewayprofileusagemethod:i:1",
        "gatewaycredentialssource:i:5",
        f"gatewayaccesstoken:s:{TICKET}",
        "promptcredentialonce:i:0",
        "authentication level:i:2",
        "enablecredsspsupport:i:1",
        "remoteapplicationmode:i:0",
        "screen mode id:i:2",
        "redirectclipboard:i:1",
        "audiomode:i:0",
        f"workspace id:s:{WORKSPACE_ID}",
    ]


def test_the_remoteapp_file_launches_the_published_alias():
    assert _lines(_build(NOTEPAD, gateway_port=8443)) == [
        "full address:s:pool-a.hosts.example.net",
        "alternate full address:s:pool-a.hosts.example.net",
        "server port:i:3389",
        "gatewayhostname:s:gw.example.net:8443",
        "gatewayusagemethod:i:1",
        "gatewayprofileusagemethod:i:1",
        "gatewaycredentialssource:i:5",
        f"gatewayaccesstoken:s:{TICKET}",
        "promptcredentialonce:i:0",
        "authentication level:i:2",
        "enablecredsspsupport:i:1",
        "remoteapplicationmode:i:1",
        "remoteapplicationprogram:s:||notepad",
        "remoteapplicationname:s:Notepad",
        "remoteapplicationcmdline:s:",
        "alternate shell:s:||notepad",
        "disableremoteappcapscheck:i:1",
        "screen mode id:i:2",
        "redirectclipboard:i:1",
        "audiomode:i:0",
        f"workspace id:s:{WORKSPACE_ID}",
    ]


def test_a_remoteapp_with_a_program_path_and_arguments():
    resource = RdpResource(kind=REMOTEAPP, alias="wordpad", title="WordPad",
                           program=r"C:\Program Files\Windows NT\Accessories\wordpad.exe", command_line="/p readme.txt")

    lines = _lines(_build(resource))

    assert r"remoteapplicationprogram:s:C:\Program Files\Windows NT\Accessories\wordpad.exe" in lines
    assert r"alternate shell:s:C:\Program Files\Windows NT\Accessories\wordpad.exe" in lines
    assert "remoteapplicationcmdline:s:/p readme.txt" in lines


def test_an_ipv6_gateway_is_bracketed():
    assert "gatewayhostname:s:[2001:db8::1]:8443" in _lines(_build(gateway_host="2001:db8::1", gateway_port=8443))


def test_the_resource_kinds_are_the_application_group_types():
    assert {DESKTOP, REMOTEAPP} == set(ApplicationGroupType.values)


# --- pool properties ------------------------------------------------------------------------


def test_custom_properties_replace_defaults_in_place_and_others_are_appended():
    lines = _lines(_build(custom_properties="audiomode:i:2\nuse multimon:i:1\nscreen mode id:i:1"))

    assert "audiomode:i:2" in lines and "audiomode:i:0" not in lines
    assert "screen mode id:i:1" in lines and "screen mode id:i:2" not in lines
    assert lines.index("screen mode id:i:1") < lines.index(f"workspace id:s:{WORKSPACE_ID}")
    assert lines[-1] == "use multimon:i:1"


def test_parsed_properties_are_accepted_too():
    lines = _lines(_build(custom_properties=parse_rdp_properties("redirectclipboard:i:0")))

    assert "redirectclipboard:i:0" in lines and "redirectclipboard:i:1" not in lines


def test_reserved_properties_cannot_reach_a_file():
    with pytest.raises(RdpPropertiesError, match="set by the control plane"):
        _build(custom_properties="gatewayhostname:s:evil.example.net:443")
    with pytest.raises(RdpPropertiesError):
        _build(custom_properties=[RdpProperty("full address", "s", "evil")])


def test_every_setting_we_write_is_reserved_or_an_overridable_default():
    defaults = {name for name, _, _ in DEFAULT_SETTINGS}
    for resource in (DESKTOP_RESOURCE, NOTEPAD):
        names = {line.split(":", 1)[0] for line in _lines(_build(resource))}
        assert names - defaults <= RESERVED_PROPERTIES


def test_objects_that_are_not_properties_are_refused():
    with pytest.raises(RdpFileError, match="RdpProperty"):
        _build(custom_properties=["gatewayhostname:s:evil"])


# --- inputs that must never become extra lines ------------------------------------------------


@pytest.mark.parametrize("overrides, message", [
    ({"resource": RdpResource(kind=REMOTEAPP, alias="x", title="Evil\r\ngatewayhostname:s:evil")}, "line break"),
    ({"resource": RdpResource(kind=REMOTEAPP, alias="x", title="T", command_line="a\nb")}, "line break"),
    ({"resource": RdpResource(kind=REMOTEAPP, alias="x", title="T", program="p\0")}, "control character"),
    ({"access_token": "abc def"}, "access token"),
    ({"access_token": ""}, "access token"),
    ({"routing_name": "pool a"}, "routing name"),
    ({"routing_name": "pool-a\r\nalternate full address:s:evil"}, "routing name"),
    ({"gateway_host": "gw.example.net/x"}, "gateway host"),
    ({"gateway_port": 0}, "gateway port"),
    ({"gateway_port": "443"}, "gateway port"),
    ({"workspace_id": "w\x85"}, "workspace id"),
    ({"resource": RdpResource(kind="app", alias="x", title="T")}, "kind"),
    ({"resource": RdpResource(kind=DESKTOP, alias="../x", title="T")}, "alias"),
    ({"resource": RdpResource(kind=DESKTOP, alias="x", title="  ")}, "title is empty"),
])
def test_it_refuses_inputs_that_cannot_be_written_safely(overrides, message):
    with pytest.raises(RdpFileError, match=message):
        _build(**overrides)


# --- what FreeRDP 2.11 reads ----------------------------------------------------------------


def freerdp_parse(data: bytes) -> dict[str, str | int]:
    """PROTOCOLS.md §1.1: FreeRDP 2.11's rules for reading a connection file.

    FF FE → UTF-16LE (BOM skipped), otherwise the bytes as they are; lines split on CR and/or LF;
    lines of one character or less ignored; the name must be followed by ':X:' with one type
    character; names case-insensitive; s: values trimmed; i: values strtol(…, 0); b: ignored.
    """
    text = data[2:].decode("utf-16-le") if data.startswith(b"\xff\xfe") else data.decode("utf-8")
    settings: dict[str, str | int] = {}
    for line in text.replace("\r", "\n").split("\n"):
        if len(line) <= 1:
            continue
        name, sep, rest = line.partition(":")
        if not sep or len(rest) < 2 or rest[1] != ":":
            continue
        type_, value = rest[0], rest[2:]
        if type_ == "s":
            settings[name.lower()] = value.strip()
        elif type_ == "i":
            settings[name.lower()] = int(value.strip(), 0)
    return settings


def test_freerdp_finds_the_gateway_settings_in_a_signed_file(rdp_ca, rdp_signer):
    data = render_signed_rdp(routing_name="pool-a.hosts.example.net", gateway_host="gw.example.net",
                             gateway_port=8443, access_token=TICKET, workspace_id=WORKSPACE_ID,
                             resource=NOTEPAD, certificate=rdp_signer.certificate,
                             private_key=rdp_signer.private_key, custom_properties="audiomode:i:1")

    settings = freerdp_parse(data)

    assert data.startswith(b"\xff\xfe")
    host, _, port = str(settings["gatewayhostname"]).rpartition(":")
    assert (host, int(port)) == ("gw.example.net", 8443)
    assert settings["gatewayusagemethod"] == 1
    assert settings["gatewayaccesstoken"] == TICKET
    assert settings["full address"] == "pool-a.hosts.example.net"
    assert settings["remoteapplicationmode"] == 1
    assert settings["remoteapplicationprogram"] == "||notepad"
    assert settings["audiomode"] == 1
    assert str(settings["signature"]).strip()


def test_the_served_file_is_signed_over_our_settings(rdp_ca, rdp_signer):
    data = render_signed_rdp(routing_name="pool-a", gateway_host="127.0.0.1", gateway_port=8443,
                             access_token=TICKET, workspace_id=WORKSPACE_ID, resource=DESKTOP_RESOURCE,
                             certificate=rdp_signer.certificate, private_key=rdp_signer.private_key)

    assert verify_rdp_signature(data, rdp_ca.certificate)
    scope = next(line for line in rdpfile.decode(data).split("\r\n") if line.startswith("signscope:s:"))
    assert scope == (
        "signscope:s:Full Address,Alternate Full Address,Server Port,EnableCredSspSupport,GatewayHostname,"
        "GatewayUsageMethod,GatewayProfileUsageMethod,GatewayCredentialsSource,PromptCredentialOnce,"
        "RemoteApplicationMode,Authentication Level,AudioMode,RedirectClipboard"
    )
