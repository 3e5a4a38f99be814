"""Create the first admin account when there is none, and say how to sign in."""
from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the first admin account if no superuser exists (password from WVD_ADMIN_PASSWORD or random)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default=os.environ.get("WVD_ADMIN_USERNAME", "admin"))

    def handle(self, *args, username: str, **options) -> None:
        host, port = settings.WEB_LISTEN
        url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/admin/"
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write(f"Sign in at {url} with your admin account.")
            return
        password = os.environ.get("WVD_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        shown = "from WVD_ADMIN_PASSWORD" if os.environ.get("WVD_ADMIN_PASSWORD") else password
        self.stdout.write(self.style.SUCCESS(
            f"Created the first admin account.\n  Sign in at {url}\n  username: {username}\n  password: {shown}\n"
            "  (shown once; change it after signing in)"
        ))
