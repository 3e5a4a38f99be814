"""Demo data: a workspace, a pooled host pool, a desktop and a RemoteApp, and a user who may use both.

Idempotent: objects that exist (matched by name) are kept as they are, so running it again changes
nothing but the host pool's registration token, which is only ever stored hashed and therefore
issued anew each time to be shown.
"""
from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from broker.choices import HostPoolType
from broker.models import HostPool
from feed.choices import ApplicationGroupType
from feed.models import ApplicationGroup, Assignment, RemoteApp, Workspace

WORKSPACE = "Demo"
HOST_POOL = "demo-pool"
DESKTOP_GROUP = "demo-desktop"
REMOTEAPP_GROUP = "demo-apps"
REMOTEAPP = "notepad"
USERNAME = "demo"


class Command(BaseCommand):
    help = ("Create (once) a demo workspace, a pooled host pool demo-pool with a desktop group and a RemoteApp "
            "group, and a user 'demo' assigned to both; prints the pool's new registration token.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--password", help="the demo user's password (default: random for a new user, "
                                               "unchanged for an existing one)")

    def handle(self, *args, password: str | None = None, **options) -> None:
        if password is not None and not password:
            raise CommandError("--password must not be empty.")
        with transaction.atomic():
            workspace = self._workspace()
            pool = self._host_pool()
            desktop_group = self._group(DESKTOP_GROUP, "Demo desktop", ApplicationGroupType.DESKTOP, pool, workspace)
            apps_group = self._group(REMOTEAPP_GROUP, "Demo apps", ApplicationGroupType.REMOTEAPP, pool, workspace)
            self._remote_app(apps_group)
            user, shown_password = self._user(password)
            for group in (desktop_group, apps_group):
                Assignment.objects.get_or_create(application_group=group, user=user)
            token, expires_at = pool.issue_registration_token()

        host, port = settings.WEB_LISTEN
        base = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        self.stdout.write(self.style.SUCCESS("Demo data is in place."))
        self.stdout.write(f"  workspace:          {workspace.display_name}")
        self.stdout.write(f"  host pool:          {pool.name} ({pool.get_pool_type_display()})")
        self.stdout.write(f"  desktop group:      {desktop_group.name}")
        self.stdout.write(f"  RemoteApp group:    {apps_group.name} (app: {REMOTEAPP})")
        self.stdout.write(f"  user:               {user.get_username()}  password: {shown_password}")
        self.stdout.write(f"  registration token: {token}")
        self.stdout.write(f"    (valid until {expires_at:%Y-%m-%d %H:%M} UTC; shown once, a new one on every run)")
        self.stdout.write(f"  register a host:    python -m hostagent.agent register --server {base} --token {token}")
        self.stdout.write(f"  user page:          {base}/")
        self.stdout.write(f"  feed:               {base}/RDWeb/Feed/webfeed.aspx")

    def _workspace(self) -> Workspace:
        workspace = Workspace.objects.filter(name__iexact=WORKSPACE).first()
        if workspace is None:
            workspace = Workspace(name=WORKSPACE, friendly_name=WORKSPACE,
                                  description="Created by seed_demo to try the feed.")
            workspace.full_clean()
            workspace.save()
        return workspace

    def _host_pool(self) -> HostPool:
        pool = HostPool.objects.filter(name__iexact=HOST_POOL).first()
        if pool is None:
            pool = HostPool(name=HOST_POOL, friendly_name="Demo pool", pool_type=HostPoolType.POOLED)
            pool.full_clean()
            pool.save()
        elif pool.pool_type != HostPoolType.POOLED:
            raise CommandError(f"A host pool {pool.name!r} exists but is {pool.get_pool_type_display()}; "
                               "the demo needs a pooled one. Rename or delete it first.")
        return pool

    def _group(self, name: str, friendly_name: str, group_type: str, pool: HostPool,
               workspace: Workspace) -> ApplicationGroup:
        group = ApplicationGroup.objects.filter(name__iexact=name).first()
        if group is None:
            group = ApplicationGroup(name=name, friendly_name=friendly_name, group_type=group_type, host_pool=pool,
                                     workspace=workspace)
            group.full_clean()
            group.save()  # a desktop group gets its Desktop here
        elif group.group_type != group_type:
            raise CommandError(f"An application group {group.name!r} exists but is of type "
                               f"{group.get_group_type_display()}; rename or delete it first.")
        return group

    def _remote_app(self, group: ApplicationGroup) -> RemoteApp:
        app = RemoteApp.objects.filter(application_group=group, name__iexact=REMOTEAPP).first()
        if app is None:
            app = RemoteApp(application_group=group, name=REMOTEAPP, friendly_name="Notepad",
                            file_path=r"C:\Windows\System32\notepad.exe", file_extensions=".txt")
            app.full_clean()
            app.save()
        return app

    def _user(self, password: str | None):
        User = get_user_model()
        user = User.objects.filter(**{f"{User.USERNAME_FIELD}__iexact": USERNAME}).first()
        if user is None:
            shown = password or secrets.token_urlsafe(12)
            user = User.objects.create_user(USERNAME, password=shown)
            return user, shown if password is None else "(as given)"
        if password is not None:
            user.set_password(password)
            user.save(update_fields=["password"])
            return user, "(as given)"
        return user, "(unchanged)"
