"""What the directory end-to-end tests do to a control plane running as processes (testbed/processes.py),
through ``manage.py shell`` as an operator would: find the group a directory group was mirrored to, and run
the directory sync that beat runs every WVD_LDAP_SYNC_MINUTES.

Shared by tests/directory/test_end_to_end.py (the project's connector) and tests/e2e/test_directory_user.py
(a stock FreeRDP client against xrdp).
"""
from __future__ import annotations

import json

from testbed.processes import ControlPlane


def _shell(plane: ControlPlane, code: str) -> str:
    """The last line ``code`` printed in the plane's ``manage.py shell``."""
    return plane.manage("shell", "--no-imports", "-c", code).stdout.strip().splitlines()[-1]


def mirrored_group_id(plane: ControlPlane, name: str) -> int:
    """The id of the Django group a directory group ``name`` became at a member's sign-in."""
    return int(_shell(plane, "from django.contrib.auth.models import Group;"
                             f"print(Group.objects.get(name={name!r}).pk)"))


def sync_directory(plane: ControlPlane) -> dict:
    """Run the sync task once (core.tasks.sync_directory_users) and return what it reported."""
    return json.loads(_shell(plane, "import json; from core.tasks import sync_directory_users;"
                                    "print(json.dumps(sync_directory_users()))"))
