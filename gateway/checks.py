"""The gateway's configuration checks, registered by its AppConfig (core/checks.py runs them before every
manage.py command)."""
from __future__ import annotations

from uuid import UUID

from django.conf import settings
from django.core.checks import Error

from wire import relaylink


def check_relay_url(app_configs, **kwargs) -> list[Error]:
    """WVD_GATEWAY_RELAY_URL, checked as the agent will split the URL it is sent in a connect order."""
    url = settings.GATEWAY_RELAY_URL
    if not url:
        return []
    try:
        tls = relaylink.split_url(url.rstrip("/") + relaylink.relay_path(str(UUID(int=0))))[0]
    except relaylink.LinkError:
        tls = False
    if tls:
        return []
    return [Error("WVD_GATEWAY_RELAY_URL must be an https://host[:port] URL (the gateway listener serves TLS)",
                  id="gateway.E001")]
