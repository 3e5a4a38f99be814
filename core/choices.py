from __future__ import annotations

from django.db import models


class CertificatePurpose(models.TextChoices):
    CA = "ca", "Certificate authority"
    FEED_SIGNING = "feed-signing", "Feed signing (.rdp files)"
    HOST_AGENT = "host-agent", "Host agent identity"
    HOST_RDP = "host-rdp", "Session host RDP listener"
    GATEWAY_TLS = "gateway-tls", "Gateway TLS"
