from django.apps import AppConfig
from django.core import checks

from core.checks import CONFIGURATION
from gateway.checks import check_relay_url


class GatewayConfig(AppConfig):
    name = "gateway"

    def ready(self) -> None:
        checks.register(check_relay_url, CONFIGURATION)
