"""Run one control-plane instance: daphne serving the whole ASGI app on WVD_WEB_LISTEN."""
from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the control plane (portal, API, feed, host channel) with daphne."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--listen", help="host:port (default: WVD_WEB_LISTEN)")

    def handle(self, *args, listen: str | None = None, **options) -> None:
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        from wvdportal.asgi import application
        from wvdportal.environment import parse_listen

        host, port = parse_listen("--listen", listen) if listen else settings.WEB_LISTEN
        self.stdout.write(f"Serving on http://{host}:{port}/ (admin /admin/, API /api/v1/, docs /api/docs/)")
        Server(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            signal_handlers=True,
            action_logger=None,
            http_timeout=None,
            websocket_timeout=86400,
            ping_interval=20,
            ping_timeout=30,
        ).run()
