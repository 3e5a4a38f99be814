"""A directory user end to end with a stock client: the control plane runs with WVD_LDAP_* against a real
OpenLDAP slapd (``ldap_server``, tests/conftest.py), the estate is tests/e2e/estate.py's (a real agent, xrdp),
and FreeRDP 2.11 opens the .rdp file the user's feed served.

The user signs in with their directory password (the token API), the admin assigns the group the directory
mirrored to the desktop's application group, the user downloads the .rdp file and connects through the
gateway to xrdp. The directory then takes them out of the group; once the sync task has run, the same file
is refused at the gateway and the refusal is recorded under their name. The gateway knows the user from the
ticket in the file; xrdp's own sign-in is the bed's local account, as in every e2e test.

tests/directory/test_end_to_end.py tells the same story with the project's connector and an echo target.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from testbed.slapd import Slapd
from testbed.xrdp import EXIT_LOGOFF_BY_USER, XRDP_LOGIN_OK, XrdpServer, Xvfb
from tests.directory.conftest import PASSWORD
from tests.directory.plane import mirrored_group_id, sync_directory
from tests.e2e.estate import Estate, running_estate, sign_in
from wire.errors import ErrorCode

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def directory_estate(ldap_server: Slapd, xrdp_server: XrdpServer, xvfb: Xvfb, tmp_path_factory) -> Iterator[Estate]:
    """The e2e estate with its control plane signing users in against ``ldap_server``."""
    with running_estate(xrdp_server, tmp_path_factory.mktemp("plane"),
                        extra_env=ldap_server.control_plane_environment()) as estate:
        yield estate


def test_a_directory_user_connects_with_freerdp_and_after_leaving_the_group_is_refused(
        ldap_server: Slapd, directory_estate: Estate, tmp_path):
    estate = directory_estate
    suffix = secrets.token_hex(3)
    name, group = f"rdp{suffix}", f"rdp-users-{suffix}"
    ldap_server.add_user(name, PASSWORD)
    ldap_server.add_group(group, [name])
    token = sign_in(estate.plane, name, PASSWORD)  # the first sign-in makes the account and mirrors the group
    status, desktops = estate.api("GET", "/api/v1/applicationgroups/?name=e2e-desktops")
    assert status == 200 and desktops["count"] == 1, desktops
    status, assignment = estate.api("POST", "/api/v1/assignments/", {
        "application_group": desktops["results"][0]["id"], "group": mirrored_group_id(estate.plane, group)})
    assert status == 201, assignment

    rdp = tmp_path / "directory-desktop.rdp"
    assert "gatewayusagemethod:i:1" in estate.download_rdp(rdp, token)
    xrdp_log_before = len(estate.xrdp.log_text())
    code, output = estate.connect(rdp)

    assert code == EXIT_LOGOFF_BY_USER, output
    assert XRDP_LOGIN_OK in estate.xrdp.log_text()[xrdp_log_before:]
    connection = estate.last_connection()
    assert connection["state"] == "ended" and connection["error_code"] == "", connection
    assert connection["username"] == name, connection
    assert connection["bytes_client_to_host"] > 1000 and connection["bytes_host_to_client"] > 1000, connection

    ldap_server.remove_member(group, name)
    assert sync_directory(estate.plane) == {"refreshed": 1, "deactivated": 0, "unavailable": ""}
    code, output = estate.connect(rdp)  # the same file, its ticket still within its lifetime

    assert code != EXIT_LOGOFF_BY_USER
    assert "E_PROXY_RAP_ACCESSDENIED" in output, output
    refused = estate.last_connection()
    assert refused["id"] != connection["id"], refused
    assert refused["state"] == "failed" and refused["username"] == name, refused
    assert refused["error_code"] == ErrorCode.ConnectionFailedUserNotAuthorized, refused
