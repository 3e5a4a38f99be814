from __future__ import annotations

from django.db import models


class ApplicationGroupType(models.TextChoices):
    DESKTOP = "desktop", "Desktop"
    REMOTEAPP = "remoteapp", "RemoteApp"


class CommandLineSetting(models.TextChoices):
    DO_NOT_ALLOW = "do_not_allow", "Do not allow command-line arguments"
    ALLOW = "allow", "Allow any command-line arguments"
    REQUIRE = "require", "Require the given command-line arguments"
