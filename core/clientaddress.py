"""Who is on the other end of an HTTP request: the one answer the sign-in throttle, host registration and
the logs of their refusals use.

Without trusted proxies (``WVD_TRUSTED_PROXIES`` unset) the client is the peer, REMOTE_ADDR, and
X-Forwarded-For is ignored: anyone can send that header. Behind a TLS-terminating proxy every peer is the
proxy, so when the peer is a trusted proxy the client comes from X-Forwarded-For, read from the right
(each proxy appends the address it saw): the first address that is not a trusted proxy is the client.
Whatever a client wrote into the header itself stands left of that and is never reached.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from django.conf import settings
from django.http import HttpRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
UNKNOWN = "unknown"


def client_address(request: HttpRequest) -> str:
    """The client's IP address (normalised: IPv6 compressed, IPv4-mapped IPv6 as IPv4), or "unknown"
    when the server saw no peer address (a Unix socket)."""
    meta = request.META
    return client_address_from(meta.get("REMOTE_ADDR") or "", meta.get("HTTP_X_FORWARDED_FOR") or "",
                               settings.TRUSTED_PROXIES)


def client_address_from(remote_addr: str, forwarded_for: str, trusted: Sequence[IPNetwork]) -> str:
    """The client behind ``remote_addr`` given the X-Forwarded-For value and the trusted proxies."""
    peer = parse_address(remote_addr)
    if peer is None:
        return UNKNOWN
    client = peer
    if not _is_trusted(peer, trusted):
        return str(client)
    hops = forwarded_for.split(",") if forwarded_for.strip() else []
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            # A trusted proxy does not write this: someone left of it did. Believe nothing from here on;
            # the last trusted hop is the best we know.
            break
        client = address
        if not _is_trusted(address, trusted):
            break
    return str(client)


def parse_address(value: str) -> IPAddress | None:
    """An address as proxies write it: ``192.0.2.1``, ``2001:db8::1``, and with a port, ``192.0.2.1:443`` or
    ``[2001:db8::1]:443``. None for anything else."""
    value = value.strip()
    if value.startswith("["):
        value, bracket, _ = value[1:].partition("]")
        if not bracket:
            return None
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped  # a dual-stack listener's view of an IPv4 peer
    return address


def _is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in trusted)
