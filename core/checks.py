"""Configuration checks: Django system checks over settings, tagged so `manage.py` runs them before any
command and stops with one line per problem (as a malformed ``WVD_*`` value in settings.py does).

Each app registers its own checks with this tag, next to the code that uses the setting.
"""
from __future__ import annotations

from django.core import checks

CONFIGURATION = "wvd_configuration"


def configuration_errors() -> list[str]:
    """The message of every failing configuration check (settings loaded and apps ready)."""
    return [message.msg for message in checks.run_checks(tags=[CONFIGURATION]) if message.is_serious()]
