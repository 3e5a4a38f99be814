from __future__ import annotations

from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    label = "portal"
    verbose_name = "Admin portal"

    def ready(self) -> None:
        # Every process (web, worker, beat) loads the apps: a host or session saved anywhere reaches
        # the open portal pages.
        from portal import live

        live.connect_signals()
