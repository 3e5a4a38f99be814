"""The host agent: runs on a session host, registers once, then keeps the host channel to the control
plane open. Imports no Django: it needs only ``websockets``, ``cryptography`` and the standard library.

Run it as ``python -m hostagent.agent register …`` and ``python -m hostagent.agent run …`` (README.md).
"""
from __future__ import annotations

AGENT_VERSION = "1.0.0"
