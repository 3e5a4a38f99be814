"""Run one control-plane instance: daphne serving the ASGI app and, on the same loop, the RD Gateway.

Each `serve` process is an addressable gateway instance: it registers itself as a GatewayInstance and
keeps that row fresh, and the broker sends session hosts to the instance that holds their client.
Without Redis (the embedded default) it also runs the beat schedule on timers, calling the same task
functions beat would.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import tempfile
from pathlib import Path

from channels.db import database_sync_to_async
from channels.routing import get_default_application
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import InterfaceError, OperationalError

from broker.gateways import register_instance, touch_instance
from core import ca, logcontext, metrics
from core.environment import gateway_addresses, parse_listen, web_origins
from gateway.periodic import run_beat_schedule
from gateway.relay import Rendezvous
from gateway.server import GatewayConfig, GatewayServer
from gateway.tls import server_ssl_context, web_endpoint, write_web_credentials

log = logging.getLogger("gateway.serve")

YOUNG_GC_THRESHOLD = 10_000  # allocations between young collections (Python's default: 700), see handle()


class Command(BaseCommand):
    help = "Serve the control plane (portal, API, feed, host channel) and the RD Gateway listener."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--listen", help="web host:port (default: WVD_WEB_LISTEN)")
        parser.add_argument("--gateway-listen", help="RD Gateway host:port (default: WVD_GATEWAY_LISTEN)")
        parser.add_argument("--no-gateway", action="store_true", help="serve the web side only")
        parser.add_argument("--web-plain", action="store_true",
                            help="serve the web side without TLS, behind a TLS-terminating proxy (WVD_WEB_TLS=off)")

    def handle(self, *args, listen: str | None = None, gateway_listen: str | None = None,
               no_gateway: bool = False, web_plain: bool = False, **options) -> None:
        from daphne.server import Server  # installs Twisted's asyncio reactor: import it first
        from twisted.internet import reactor

        # Python's cyclic collector, by default, promotes whatever survives 700 allocations; a heartbeat's objects
        # wait on the database thread that long, so they reached the oldest generation, and every ~30 s a full
        # pass walked all of an instance's objects (about a million with 5,000 host channels) for 0.65-1.3 s,
        # finding nothing, while every channel of the instance waited: heartbeat p99 765 ms at 10,000 channels.
        # Young passes every 10,000 allocations let those objects die first: p99 59 ms (bench/RESULTS.md).
        gc.set_threshold(YOUNG_GC_THRESHOLD, 10, 10)

        try:
            host, port = parse_listen("--listen", listen) if listen else settings.WEB_LISTEN
            gw_host, gw_port = (parse_listen("--gateway-listen", gateway_listen) if gateway_listen
                                else settings.GATEWAY_LISTEN)
            if gateway_listen or listen:
                # What follows the listen addresses in settings follows the options too (unless set explicitly):
                # the address in .rdp files and connect orders, the certificate's names, the publisher id.
                for name, value in gateway_addresses((gw_host, gw_port), (host, port)).items():
                    setattr(settings, name, value)
            if listen:  # the portal's origins follow the web listener too (unless WVD_WEB_ORIGINS is set)
                settings.WEB_ORIGINS = web_origins("WVD_WEB_ORIGINS", settings.ALLOWED_HOSTS, (host, port),
                                                   settings.WEB_TLS and not web_plain, settings.CSRF_TRUSTED_ORIGINS)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        instance_name = settings.GATEWAY_INSTANCE_NAME or f"{gw_host}:{gw_port}"
        public_host = settings.GATEWAY_PUBLIC_HOST
        public_host = f"[{public_host}]" if ":" in public_host else public_host
        relay_url = settings.GATEWAY_RELAY_URL or f"https://{public_host}:{settings.GATEWAY_PUBLIC_PORT}"
        gateway = None if no_gateway else self.prepare_gateway(instance_name, relay_url)

        def started() -> None:
            loop = asyncio.get_event_loop()  # daphne made the reactor's loop the current one
            if gateway is not None:
                loop.create_task(self.run_gateway(gateway, gw_host, gw_port, reactor))
            if not settings.REDIS_URL:
                loop.create_task(run_beat_schedule())

        if settings.METRICS_LISTEN is not None:
            self.start_metrics(settings.METRICS_LISTEN, (host, port), None if no_gateway else (gw_host, gw_port))
        web_tls = settings.WEB_TLS and not web_plain
        try:
            ca.ensure_ca()
        except ca.CAError as exc:
            raise CommandError(str(exc)) from None
        with tempfile.TemporaryDirectory(prefix="wvd-web-tls-") as credentials_dir:
            # Twisted reads the certificate and key from files when it starts listening: they live in a
            # private directory (0700) for as long as `serve` runs.
            endpoint = web_endpoint(host, port, self.web_credentials(Path(credentials_dir)) if web_tls else None)
            web_host = f"[{host}]" if ":" in host else host
            where = "(admin /admin/, API /api/v1/, docs /api/docs/)"
            if web_tls:
                self.stdout.write(f"Serving on https://{web_host}:{port}/ {where}")
            else:
                self.stdout.write(f"Serving on http://{web_host}:{port}/ without TLS, for a TLS-terminating proxy {where}")
            self.stdout.write(f"CA certificate: /ca.pem, SHA-256 fingerprint {ca.ca_fingerprint()} "
                              "(check a downloaded copy against it)")
            if gateway is not None:
                self.stdout.write(f"RD Gateway on https://{gw_host}:{gw_port}/remoteDesktopGateway/ "
                                  f"(instance {instance_name}, hosts dial {relay_url})")
            Server(
                application=get_default_application(),  # settings.ASGI_APPLICATION: every app's routes
                endpoints=[endpoint],
                signal_handlers=True,
                action_logger=None,
                http_timeout=None,
                websocket_timeout=86400,
                ping_interval=20,
                ping_timeout=30,
                ready_callable=started,
            ).run()

    def start_metrics(self, listen: tuple[str, int], web: tuple[str, int], gateway: tuple[str, int] | None) -> None:
        """/metrics on its own listener (WVD_METRICS_LISTEN): never on the public web or gateway one."""
        if listen in (web, gateway):
            raise CommandError(f"WVD_METRICS_LISTEN={listen[0]}:{listen[1]} is also the web or RD Gateway "
                               "listener; metrics need an address of their own")
        try:
            metrics.serve_metrics(listen, "serve")
        except OSError as exc:
            raise CommandError(f"WVD_METRICS_LISTEN: cannot listen on {listen[0]}:{listen[1]}: "
                               f"{exc.strerror or exc}") from None
        self.stdout.write(f"Metrics on http://{listen[0]}:{listen[1]}/metrics")

    def web_credentials(self, directory: Path) -> tuple[Path, Path, Path | None]:
        try:
            return write_web_credentials(directory)
        except (ImproperlyConfigured, ca.CAError) as exc:
            raise CommandError(str(exc)) from None

    def prepare_gateway(self, instance_name: str, relay_url: str):
        """Everything that needs the database before the loop runs: CA, TLS, the instance row."""
        ca.ensure_ca()
        try:
            ssl_context = server_ssl_context()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        instance = register_instance(
            instance_name, settings.GATEWAY_PUBLIC_HOST, settings.GATEWAY_PUBLIC_PORT, relay_url,
            region=settings.GATEWAY_REGION,
        )
        config = GatewayConfig(instance_name=instance_name, instance_id=instance.pk,
                               host_arrival_timeout=settings.GATEWAY_HOST_ARRIVAL_TIMEOUT,
                               preauth_timeout=settings.GATEWAY_PREAUTH_SECONDS,
                               preauth_max_per_address=settings.GATEWAY_PREAUTH_MAX_PER_ADDRESS,
                               preauth_max=settings.GATEWAY_PREAUTH_MAX,
                               web_origins=tuple(settings.WEB_ORIGINS))
        # The one rendezvous both halves of every connection of this process meet in.
        return GatewayServer(config, Rendezvous(), ssl_context)

    async def run_gateway(self, gateway, host: str, port: int, reactor) -> None:
        try:
            await gateway.start(host, port)
        except OSError as exc:
            log.critical("RD Gateway cannot listen on %s:%s: %s", host, port, exc.strerror or exc)
            reactor.stop()
            return
        reactor.addSystemEventTrigger("before", "shutdown", lambda: asyncio.ensure_future(gateway.stop()))
        # Like the gateway's other database work: the thread's connection is dropped when broken, so the
        # refresh reconnects once the database is back instead of failing on a dead connection for ever.
        touch = database_sync_to_async(touch_instance, thread_sensitive=False)
        failing = False
        while True:
            await asyncio.sleep(settings.GATEWAY_INSTANCE_HEARTBEAT)
            try:
                await touch(gateway.config.instance_name)
            except (OperationalError, InterfaceError) as exc:  # the database is away: one line, not a loop
                if not failing:
                    log.warning("could not refresh this gateway instance's row (the database: %s); trying "
                                "again every %s s", logcontext.first_line(exc),
                                settings.GATEWAY_INSTANCE_HEARTBEAT)
                failing = True
                continue
            except Exception:  # noqa: BLE001 - a database hiccup must not stop the gateway
                log.exception("could not refresh this gateway instance's row")
                continue
            if failing:
                log.info("refreshed this gateway instance's row again: the database is back")
                failing = False
