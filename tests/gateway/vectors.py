"""The byte vectors of PROTOCOLS.md §4.4 (FreeRDP 2.11.7 captures and the server replies it accepts)."""
from __future__ import annotations


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("\n", ""))


# Client -> server, as FreeRDP 2.11.7 sends them.
HANDSHAKE_REQUEST = hexbytes("01 00 00 00 0e 00 00 00 01 00 00 00 02 00")
TUNNEL_CREATE = hexbytes(
    "04 00 00 00 2c 00 00 00 0d 00 00 00 01 00 00 00 1a 00"
    "54 00 45 00 53 00 54 00 54 00 4f 00 4b 00 45 00 4e 00 31 00 32 00 33 00 00 00"
)  # caps 0x0D, PAA cookie "TESTTOKEN123" with its NUL
TUNNEL_AUTH = hexbytes("06 00 00 00 12 00 00 00 00 00 06 00 76 00 6d 00 00 00")  # client name "vm"
CHANNEL_CREATE = hexbytes(
    "08 00 00 00 24 00 00 00 01 00 3e 0d 03 00 14 00"
    "31 00 32 00 37 00 2e 00 30 00 2e 00 30 00 2e 00 31 00 00 00"
)  # one resource "127.0.0.1", port 3390, protocol 3
DATA_ABC = hexbytes("0a 00 00 00 0d 00 00 00 03 00 61 62 63")
KEEPALIVE = hexbytes("0d 00 00 00 08 00 00 00")
CLOSE_CHANNEL_RESPONSE = hexbytes("11 00 00 00 0c 00 00 00 00 00 00 00")

# Server -> client.
HANDSHAKE_RESPONSE = hexbytes("02 00 00 00 12 00 00 00 00 00 00 00 01 00 00 00 02 00")
TUNNEL_RESPONSE_MINIMAL = hexbytes("05 00 00 00 12 00 00 00 00 00 00 00 00 00 00 00 00 00")
TUNNEL_RESPONSE_RDPGW = hexbytes(
    "05 00 00 00 1a 00 00 00 00 00 00 00 00 00 03 00 00 00 0a 00 00 00 02 00 00 00"
)  # tunnelId 10, caps IDLE_TIMEOUT
# The minimal response with statusCode 0x800759F8 (the table's "reject token").
TUNNEL_RESPONSE_ACCESS_DENIED = hexbytes("05 00 00 00 12 00 00 00 00 00 f8 59 07 80 00 00 00 00")
TUNNEL_AUTH_RESPONSE_MINIMAL = hexbytes("07 00 00 00 10 00 00 00 00 00 00 00 00 00 00 00")
TUNNEL_AUTH_RESPONSE_ENABLE_ALL = hexbytes(
    "07 00 00 00 18 00 00 00 00 00 00 00 03 00 00 00 00 00 00 80 00 00 00 00"
)  # redirFlags ENABLE_ALL, idle timeout 0
CHANNEL_RESPONSE_MINIMAL = hexbytes("09 00 00 00 10 00 00 00 00 00 00 00 00 00 00 00")
CHANNEL_RESPONSE_ID_1 = hexbytes("09 00 00 00 14 00 00 00 00 00 00 00 01 00 00 00 01 00 00 00")
SERVICE_MESSAGE_HI = hexbytes("0b 00 00 00 10 00 00 00 06 00 48 00 69 00 00 00")
CLOSE_CHANNEL = hexbytes("10 00 00 00 0c 00 00 00 00 00 00 00")

# Everything FreeRDP sends up to the open channel, in order.
CLIENT_SETUP = (HANDSHAKE_REQUEST, TUNNEL_CREATE, TUNNEL_AUTH, CHANNEL_CREATE)
