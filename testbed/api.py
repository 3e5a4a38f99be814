"""One request to the control plane's JSON REST API, as the e2e tests and the benchmarks make them.

Plain ``urllib``: no client library between the harness and the server under test. Over https the caller
passes the TLS context that trusts the plane's CA (``ControlPlane.ssl_context()``, or ``plane.call``).
"""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request


def call(base_url: str, method: str, path: str, body: dict | None = None, token: str | None = None,
         timeout: float = 30, context: ssl.SSLContext | None = None) -> tuple[int, object]:
    """One JSON API request: (status, decoded body); an error body that is not JSON comes back as "raw"."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            text = response.read()
            return response.status, json.loads(text) if text else {}
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, {"raw": text.decode(errors="replace")[:500]}
