"""A host pool's custom RDP properties: what is accepted, what is refused and why."""
from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from broker.models import HostPool
from broker.rdpproperties import (
    KNOWN_PROPERTIES,
    RESERVED_PROPERTIES,
    RdpPropertiesError,
    RdpProperty,
    parse_rdp_properties,
)
from feed.rdpsign import SIGNABLE_SETTINGS


def _problems(text: str) -> list[str]:
    with pytest.raises(RdpPropertiesError) as caught:
        parse_rdp_properties(text)
    return caught.value.problems


def test_it_accepts_typical_display_and_redirection_settings():
    properties = parse_rdp_properties(
        "audiomode:i:0\r\nredirectclipboard:i:1\r\n\r\ndrivestoredirect:s:C:;E:;\nscreen mode id:i:1\n"
    )

    assert [p.line for p in properties] == [
        "audiomode:i:0", "redirectclipboard:i:1", "drivestoredirect:s:C:;E:;", "screen mode id:i:1",
    ]


def test_empty_text_means_no_properties():
    assert parse_rdp_properties("") == []
    assert parse_rdp_properties("  \n\n") == []


def test_names_match_case_insensitively_and_are_written_in_lower_case():
    (prop,) = parse_rdp_properties("Screen Mode ID:i:2")

    assert prop == RdpProperty("screen mode id", "i", "2")


def test_values_may_contain_colons_and_are_trimmed():
    (prop,) = parse_rdp_properties("support url:s: https://help.example.net:8443/rdp ")

    assert prop.value == "https://help.example.net:8443/rdp"


def test_it_refuses_an_unknown_setting_naming_the_line():
    (problem,) = _problems("audiomode:i:0\nfrobnicate:i:1")

    assert problem == "Line 2 ('frobnicate:i:1'): 'frobnicate' is not a known .rdp setting."


def test_it_refuses_a_wrong_type():
    (problem,) = _problems("audiomode:s:0")

    assert "Line 1" in problem and "'audiomode' takes an integer (i), not a string (s)" in problem


def test_it_refuses_a_value_that_is_not_a_whole_number():
    (problem,) = _problems("desktopwidth:i:wide")

    assert "'desktopwidth' needs a whole number, got 'wide'" in problem


@pytest.mark.parametrize("value", ["", "1.5", "0x10", "99999999999", " "])
def test_integer_values_must_be_plain_32_bit_decimals(value):
    assert _problems(f"desktopwidth:i:{value}")


@pytest.mark.parametrize("line", ["audiomode", "audiomode:0", ":i:0", "audiomode:int:0", "audiomode:x:0"])
def test_it_refuses_malformed_lines(line):
    (problem,) = _problems(line)

    assert problem.startswith("Line 1")
    assert "name:type:value" in problem or "the type must be" in problem


def test_it_refuses_duplicates_whatever_their_case():
    (problem,) = _problems("audiomode:i:0\nAudioMode:i:1")

    assert problem == "Line 2 ('AudioMode:i:1'): 'audiomode' is already set on line 1."


@pytest.mark.parametrize("name", sorted(RESERVED_PROPERTIES))
def test_it_refuses_every_setting_the_control_plane_writes(name):
    line = f"{name.upper()}:{KNOWN_PROPERTIES[name]}:x"

    (problem,) = _problems(line)

    assert f"'{name}' is set by the control plane" in problem


def test_the_reserved_list_covers_the_routing_gateway_and_signature_settings():
    assert {
        "full address", "alternate full address", "gatewayhostname", "gatewayusagemethod",
        "gatewayprofileusagemethod", "gatewaycredentialssource", "gatewayaccesstoken", "signscope", "signature",
        "workspace id", "remoteapplicationmode", "remoteapplicationprogram", "remoteapplicationname",
        "alternate shell", "loadbalanceinfo",
    } <= RESERVED_PROPERTIES


def test_every_signable_setting_is_known_with_its_type():
    for prefix, _ in SIGNABLE_SETTINGS:
        name, type_, _ = prefix.split(":")
        if name in ("remoteapplicationexpandcmdline", "remoteapplicationexpandworkingdir"):
            continue  # rdpsign's table types these :s:, real files write :i: (PROTOCOLS.md §2.2)
        assert KNOWN_PROPERTIES[name] == type_, name


def test_it_lists_every_bad_line_at_once():
    problems = _problems("audiomode:i:0\nfull address:s:evil\nbogus:i:1\nredirectclipboard:i:yes")

    assert [p.split(" ", 2)[1] for p in problems] == ["2", "3", "4"]


def test_semicolon_separated_input_gets_a_hint():
    (problem,) = _problems("audiomode:i:0;redirectclipboard:i:1")

    assert "its own line" in problem


def test_control_characters_in_values_are_refused():
    assert "control character" in _problems("domain:s:CONTOSO\x1b[31m")[0]


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x0b", "\x0c", "\x85"])
def test_a_line_break_only_some_readers_see_is_refused_inside_a_value(separator):
    # The .rdp grammar breaks lines at CR and LF only (wire/rdpfile.py); anything else that looks like a
    # line break to some reader must never reach a file.
    assert "control character" in _problems(f"domain:s:CONTOSO{separator}alternate shell:s:cmd.exe")[0]


def test_oversized_input_is_refused_without_parsing_it():
    (problem,) = _problems("audiomode:i:0\n" * 5000)

    assert "longer than" in problem


def test_a_reserved_property_cannot_even_be_constructed():
    with pytest.raises(RdpPropertiesError, match="set by the control plane"):
        RdpProperty("gatewayhostname", "s", "evil.example.net:443")


# --- wired into the model ---------------------------------------------------------------------


def test_a_host_pool_with_bad_properties_does_not_validate(db):
    pool = HostPool(name="pool-x", custom_rdp_properties="audiomode:i:0\ngatewayhostname:s:evil:443")

    with pytest.raises(ValidationError) as caught:
        pool.full_clean()

    messages = caught.value.message_dict["custom_rdp_properties"]
    assert messages == ["Line 2 ('gatewayhostname:s:evil:443'): 'gatewayhostname' is set by the control plane "
                        "and cannot be changed per host pool."]


def test_a_host_pool_with_good_properties_validates(db):
    HostPool(name="pool-y", custom_rdp_properties="audiomode:i:2\nuse multimon:i:1").full_clean()


def test_both_pool_errors_are_reported_together(pooled_pool):
    pooled_pool.pool_type = "personal"
    pooled_pool.custom_rdp_properties = "nonsense"

    with pytest.raises(ValidationError) as caught:
        pooled_pool.full_clean()

    assert set(caught.value.message_dict) == {"pool_type", "custom_rdp_properties"}
