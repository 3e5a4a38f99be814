"""The OIDC provider's groups (core/oidc.py, docs/oidc.md): list them, or make them before anyone signs in so
application groups can be assigned to them ahead of the first sign-in."""
from __future__ import annotations

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.models import OidcGroup


class Command(BaseCommand):
    help = ("List the groups whose membership the OIDC provider's groups claim sets, or add some (named exactly "
            "as the claim names them). --adopt hands an existing local group of that name to the provider.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=["list", "add"])
        parser.add_argument("names", nargs="*")
        parser.add_argument("--adopt", action="store_true",
                            help="Mark an existing local group as the provider's (its members are then set by the "
                                 "claim at their next sign-in).")

    def handle(self, *args, action: str, names: list[str], adopt: bool, **options) -> None:
        if action == "list":
            for group in OidcGroup.objects.select_related("group"):
                self.stdout.write(group.group.name)
            return
        if not names:
            raise CommandError("name the groups to add")
        with transaction.atomic():
            for name in names:
                if not name.strip() or len(name) > 150:
                    raise CommandError(f"{name!r} cannot be a group name (1 to 150 characters)")
                group, created = Group.objects.get_or_create(name=name)
                if not created and not adopt and not OidcGroup.objects.filter(group=group).exists():
                    raise CommandError(f"{name!r} is a local group: pass --adopt to hand it to the provider")
                _, marked = OidcGroup.objects.get_or_create(group=group)
                self.stdout.write(f"{name}: {'added' if created else 'adopted' if marked else 'already the provider’s'}")
