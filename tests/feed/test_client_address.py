"""The client's address, the one the sign-in throttle and registration key on and their refusals log: the
peer, unless the peer is a trusted proxy (WVD_TRUSTED_PROXIES); then X-Forwarded-For, read from the right
past every trusted proxy."""
from __future__ import annotations

from ipaddress import ip_network

import pytest
from django.test import RequestFactory

from core.clientaddress import client_address, client_address_from

PROXIES = (ip_network("10.0.0.0/8"), ip_network("192.0.2.10/32"), ip_network("2001:db8:ffff::/48"))


def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says():
    assert client_address_from("203.0.113.9", "198.51.100.1", ()) == "203.0.113.9"


def test_a_peer_that_is_not_a_trusted_proxy_is_the_client_and_its_header_is_ignored():
    assert client_address_from("203.0.113.9", "198.51.100.1", PROXIES) == "203.0.113.9"


def test_behind_a_trusted_proxy_the_client_is_the_address_it_forwarded():
    assert client_address_from("192.0.2.10", "198.51.100.1", PROXIES) == "198.51.100.1"


def test_a_trusted_proxy_inside_a_cidr_network_counts_too():
    assert client_address_from("10.20.30.40", "198.51.100.1", PROXIES) == "198.51.100.1"


def test_a_spoofed_header_is_passed_over_the_proxy_appended_the_real_client():
    # The client sent "X-Forwarded-For: 1.2.3.4"; the proxy appended the address it saw.
    assert client_address_from("192.0.2.10", "1.2.3.4, 198.51.100.1", PROXIES) == "198.51.100.1"


def test_a_chain_of_trusted_proxies_is_walked_from_the_right():
    forwarded = "1.2.3.4, 198.51.100.1, 10.1.1.1, 10.2.2.2"
    assert client_address_from("192.0.2.10", forwarded, PROXIES) == "198.51.100.1"


def test_a_malformed_hop_stops_the_walk_at_the_last_trusted_proxy():
    assert client_address_from("192.0.2.10", "198.51.100.1, not-an-address, 10.1.1.1", PROXIES) == "10.1.1.1"


def test_a_trusted_peer_without_the_header_is_itself_the_client():
    assert client_address_from("192.0.2.10", "", PROXIES) == "192.0.2.10"


def test_clients_that_are_all_trusted_give_the_leftmost():
    assert client_address_from("10.0.0.1", "10.9.9.9, 10.0.0.2", PROXIES) == "10.9.9.9"


@pytest.mark.parametrize(("remote", "forwarded", "client"), [
    ("2001:db8:ffff::1", "2001:DB8:0:0::7", "2001:db8::7"),  # normalised
    ("2001:db8:ffff::1", "[2001:db8::7]:51234", "2001:db8::7"),  # with a port
    ("192.0.2.10", "198.51.100.1:51234", "198.51.100.1"),
    ("2001:db8:ffff::1", "198.51.100.1", "198.51.100.1"),  # an IPv6 proxy for an IPv4 client
    ("::ffff:192.0.2.10", "2001:db8::7", "2001:db8::7"),  # a dual-stack listener's IPv4 peer
    ("2001:db8:1::1", "198.51.100.1", "2001:db8:1::1"),  # an untrusted IPv6 peer
])
def test_ipv6_proxies_and_clients(remote, forwarded, client):
    assert client_address_from(remote, forwarded, PROXIES) == client


def test_without_a_peer_address_the_client_is_unknown():
    assert client_address_from("", "198.51.100.1", PROXIES) == "unknown"


def test_the_request_helper_reads_the_setting(settings):
    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.10", HTTP_X_FORWARDED_FOR="198.51.100.1")
    settings.TRUSTED_PROXIES = ()
    assert client_address(request) == "192.0.2.10"
    settings.TRUSTED_PROXIES = PROXIES
    assert client_address(request) == "198.51.100.1"
