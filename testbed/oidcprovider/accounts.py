"""Change the test provider's clients and users from the harness (``python -m testbed.oidcprovider.accounts``,
in the provider's environment)::

    client <client id> <secret> <redirect uri>...   register (or update) a confidential code-flow client
    user <name> <password> [--email E] [--groups g1,g2] [--inactive]   create or update; groups set exactly
"""
from __future__ import annotations

import argparse
import os
import sys

import django


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testbed.oidcprovider.settings")
    django.setup()
    from django.contrib.auth.models import Group, User  # noqa: PLC0415 - after setup()
    from oauth2_provider.models import Application  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="accounts")
    commands = parser.add_subparsers(dest="command", required=True)
    client = commands.add_parser("client")
    client.add_argument("client_id")
    client.add_argument("secret")
    client.add_argument("redirect_uris", nargs="+")
    user = commands.add_parser("user")
    user.add_argument("name")
    user.add_argument("password")
    user.add_argument("--email", default="")
    user.add_argument("--groups", default="")
    user.add_argument("--inactive", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "client":
        application = Application.objects.filter(client_id=args.client_id).first() or Application(client_id=args.client_id)
        application.name = args.client_id
        application.client_secret = args.secret  # hashed on save
        application.client_type = Application.CLIENT_CONFIDENTIAL
        application.authorization_grant_type = Application.GRANT_AUTHORIZATION_CODE
        application.algorithm = Application.RS256_ALGORITHM
        application.redirect_uris = " ".join(args.redirect_uris)
        application.skip_authorization = True
        application.save()
    else:
        account, _ = User.objects.get_or_create(username=args.name)
        account.set_password(args.password)
        account.email = args.email
        account.first_name = args.name.capitalize()
        account.is_active = not args.inactive
        account.save()
        names = [name for name in args.groups.split(",") if name]
        account.groups.set([Group.objects.get_or_create(name=name)[0] for name in names])


if __name__ == "__main__":
    main(sys.argv[1:])
