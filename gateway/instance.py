"""This process as a gateway instance: the one rendezvous both halves of a connection meet in."""
from __future__ import annotations

from gateway.relay import Rendezvous

# The client side (the RD Gateway listener) and the host side (the relay endpoint under daphne) run on
# the same event loop in one `serve` process; the broker always sends the host to the instance that
# holds the client, so they find each other here.
rendezvous = Rendezvous()
