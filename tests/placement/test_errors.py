"""The table of connection error codes, and docs/errors.md generated from it."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from broker.models import Connection
from wire.errors import ERRORS, TICKET_REFUSAL_CODES, ErrorCode, ProxyStatus, describe, render_markdown

DOC = Path(settings.BASE_DIR) / "docs" / "errors.md"


def test_every_code_has_a_message_a_remedy_an_owner_and_a_gateway_status():
    for code, entry in ERRORS.items():
        assert entry.code == code
        assert entry.message.endswith(".") and len(entry.message) > 20, code
        assert entry.remedy.endswith(".") and len(entry.remedy) > 20, code
        assert entry.fix_by in {"user", "admin", "ours"}, code
        assert isinstance(entry.gateway_status, ProxyStatus), code


def test_the_table_holds_exactly_the_named_codes_and_they_fit_the_column():
    assert set(ERRORS) == set(ErrorCode)
    width = Connection._meta.get_field("error_code").max_length
    assert all(len(code) <= width for code in ERRORS)


def test_gateway_statuses_are_the_ms_tsgu_values():
    # PROTOCOLS.md §4.4 "Return codes" (MS-TSGU §2.2.6).
    assert ProxyStatus.E_PROXY_INTERNALERROR == 0x800759D8
    assert ProxyStatus.E_PROXY_RAP_ACCESSDENIED == 0x800759DA
    assert ProxyStatus.E_PROXY_COOKIE_AUTHENTICATION_ACCESS_DENIED == 0x800759F8
    assert ProxyStatus.E_PROXY_UNSUPPORTED_AUTHENTICATION_METHOD == 0x800759F9
    # The HRESULT forms: only those refuse in a CHANNEL_RESPONSE (FreeRDP tests FAILED(); see errors.py).
    assert ProxyStatus.E_PROXY_TS_CONNECTFAILED == 0x800759DD
    assert ProxyStatus.E_PROXY_MAXCONNECTIONSREACHED == 0x800759E6
    assert ProxyStatus.E_PROXY_SESSIONTIMEOUT == 0x59F6
    assert ProxyStatus.E_PROXY_CONNECTIONABORTED == 0x4D4
    assert all(0 <= status <= 0xFFFFFFFF for status in ProxyStatus)  # a u32 on the wire


def test_every_refusal_is_answered_with_a_status_the_client_reads_as_a_failure():
    # Codes sent in TUNNEL/CHANNEL responses need bit 31; only those for connections that were already
    # gone (or established) when they failed, or whose gateway died, are never sent as a refusal.
    never_a_refusal = {ErrorCode.ConnectionFailedClientDisconnect, ErrorCode.ConnectionBrokenMissedHeartbeat,
                       ErrorCode.ConnectionBrokenGatewayInstanceLost}
    for code, entry in ERRORS.items():
        if code not in never_a_refusal:
            assert entry.gateway_status & 0x80000000, code


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ErrorCode.ConnectionFailedTicketExpired, ProxyStatus.E_PROXY_COOKIE_AUTHENTICATION_ACCESS_DENIED),
        (ErrorCode.ConnectionFailedTicketInvalid, ProxyStatus.E_PROXY_COOKIE_AUTHENTICATION_ACCESS_DENIED),
        (ErrorCode.ConnectionFailedUserNotAuthorized, ProxyStatus.E_PROXY_RAP_ACCESSDENIED),
        (ErrorCode.ConnectionFailedResourceMismatch, ProxyStatus.E_PROXY_RAP_ACCESSDENIED),
        (ErrorCode.ConnectionFailedNoHealthyRdshAvailable, ProxyStatus.E_PROXY_TS_CONNECTFAILED),
        (ErrorCode.ConnectionFailedMaxSessionsReached, ProxyStatus.E_PROXY_MAXCONNECTIONSREACHED),
        (ErrorCode.ConnectionFailedReverseConnectTimeout, ProxyStatus.E_PROXY_TS_CONNECTFAILED),
        (ErrorCode.InternalError, ProxyStatus.E_PROXY_INTERNALERROR),
    ],
)
def test_the_gateway_answers_each_failure_with_its_documented_status(code, status):
    assert describe(code).gateway_status is status


def test_problems_are_owned_by_whoever_can_fix_them():
    assert describe(ErrorCode.ConnectionFailedTicketExpired).fix_by == "user"
    assert describe(ErrorCode.ConnectionFailedNoHealthyRdshAvailable).fix_by == "admin"
    assert describe(ErrorCode.InternalError).fix_by == "ours"


def test_describe_shows_an_unknown_code_as_an_internal_error_keeping_the_code():
    entry = describe("ConnectionFailedFromTheFuture")
    assert entry.code == "ConnectionFailedFromTheFuture"
    assert entry.gateway_status is ProxyStatus.E_PROXY_INTERNALERROR
    assert "not in the current table" in entry.note


def test_every_ticket_refusal_reason_has_a_ticket_code():
    # The reason codes of core.tickets.TicketRefused (docs: notes/ticket_contract.md).
    assert set(TICKET_REFUSAL_CODES) == {"malformed", "bad_signature", "expired", "revoked", "used", "wrong_kind"}
    assert all(describe(code).stage == "ticket" for code in TICKET_REFUSAL_CODES.values())


def test_docs_errors_md_is_up_to_date():
    assert DOC.read_text(encoding="utf-8") == render_markdown(), (
        "docs/errors.md is out of date: run `python manage.py errors_doc`"
    )


def test_the_docs_describe_every_code_with_its_status():
    text = render_markdown()
    for entry in ERRORS.values():
        assert f"### {entry.code}\n" in text
        assert f"`{entry.gateway_status.name}` ({entry.gateway_status_hex})" in text
        assert entry.remedy in text


def test_errors_doc_writes_the_file_and_check_catches_drift(tmp_path, capsys):
    target = tmp_path / "errors.md"

    call_command("errors_doc", output=target)
    assert target.read_text(encoding="utf-8") == render_markdown()
    call_command("errors_doc", output=target, check=True)

    target.write_text(render_markdown().replace("Fixed by", "Fixd by"), encoding="utf-8")
    with pytest.raises(CommandError, match="out of date"):
        call_command("errors_doc", output=target, check=True)
    with pytest.raises(CommandError, match="out of date"):
        call_command("errors_doc", output=tmp_path / "missing.md", check=True)
