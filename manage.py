#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wvdportal.settings")
    import django
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        settings.INSTALLED_APPS  # noqa: B018 - load settings now so a bad WVD_* value fails in one line
        django.setup()
        from core.checks import configuration_errors

        problems = configuration_errors()  # the apps' checks of their settings, one line each too
    except ImproperlyConfigured as exc:
        problems = [str(exc)]
    if problems:
        sys.stderr.write("".join(f"configuration error: {problem}\n" for problem in problems))
        sys.exit(2)
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
