"""How every bearer secret we hand out (API tokens, registration tokens) is stored."""
from __future__ import annotations

import hashlib


def hash_secret(value: str) -> str:
    """SHA-256 hex. The secrets are 256-bit random values, so a slow password hash adds nothing."""
    return hashlib.sha256(value.encode()).hexdigest()
