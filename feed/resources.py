"""Which desktops and RemoteApps a user may see and launch: the one place that decides it.

A user reaches a resource through an assignment of the user, or of one of the user's groups, to the
resource's application group. Only application groups registered in a workspace are published (as
in Azure Virtual Desktop: the workspace is what users subscribe to). The JSON feed, the MS-TSWP
webfeed, the .rdp files, the icons and the user's page all ask this module, so they cannot disagree.

RemoteApps with ``show_in_feed=False`` are left out of listings but stay launchable by the users
assigned to their group: access is granted per application group, and hiding an app is a matter of
presentation (an admin can hand out its direct .rdp link, and schema 2.1 webfeeds list it with
``ShowByDefault="false"``).

Two queries whatever the number of resources (desktops, then RemoteApps); icons are never loaded.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Exists, OuterRef, Q
from django.urls import reverse

from broker.admission import Denial
from feed.choices import ApplicationGroupType, CommandLineSetting
from feed.models import ApplicationGroup, Assignment, Desktop, RemoteApp
from wire.errors import ErrorCode
from wire.tickets import ConnectionTicket

logger = logging.getLogger(__name__)

DESKTOP = ApplicationGroupType.DESKTOP.value
REMOTEAPP = ApplicationGroupType.REMOTEAPP.value
# A desktop group has exactly one Desktop, so its alias in URLs is fixed.
DESKTOP_ALIAS = "desktop"
# What MS-TSWP calls the two kinds (Resource/@Type).
FEED_TYPES = {DESKTOP: "Desktop", REMOTEAPP: "RemoteApp"}
_FILE_EXTENSION = re.compile(r"^\.[A-Za-z0-9_-]{1,32}$")


@dataclass(frozen=True)
class Resource:
    """A desktop or RemoteApp as one user sees it, with what the feed and its .rdp file need."""

    kind: str  # DESKTOP or REMOTEAPP
    pk: int  # of the Desktop or RemoteApp row
    alias: str  # DESKTOP_ALIAS, or the RemoteApp's name
    title: str
    description: str
    application_group_id: int
    application_group_name: str
    workspace_id: int
    workspace_name: str
    workspace_title: str
    workspace_description: str
    host_pool_id: int
    host_pool_name: str  # the routing name: `full address` in the .rdp file
    host_pool_updated_at: datetime
    custom_rdp_properties: str
    updated_at: datetime
    program: str = ""  # RemoteApp: the program path on the session host
    command_line: str = ""  # RemoteApp: the arguments its command-line policy lets us send
    file_extensions: tuple[str, ...] = ()
    show_in_feed: bool = True

    @property
    def key(self) -> str:
        """Unique among all resources: ``<application group>/<alias>``. The URL path of its files,
        the webfeed's Alias and the resource named in its connection tickets."""
        return f"{self.application_group_name}/{self.alias}"

    @property
    def feed_type(self) -> str:
        return FEED_TYPES[self.kind]

    @property
    def version(self) -> str:
        """Changes whenever the resource is saved (microseconds): appended to icon URLs so clients
        refetch them, and part of the converted icons' cache key."""
        return format(int(self.updated_at.timestamp() * 1_000_000), "x")


def rdp_path(resource: Resource) -> str:
    return reverse("feed:rdp", args=[resource.application_group_name, resource.alias])


def web_session_path(resource: Resource) -> str:
    """The desktop in the browser (feed/webclient.py)."""
    return reverse("feed:web-session", args=[resource.application_group_name, resource.alias])


def icon_path(resource: Resource, *, png32: bool = False) -> str:
    """The .ico (``png32=False``) or 32x32 .png URL path, versioned for caching."""
    name = "feed:icon-png32" if png32 else "feed:icon-ico"
    return reverse(name, args=[resource.application_group_name, resource.alias]) + f"?v={resource.version}"


def _visible_groups(user: AbstractBaseUser | AnonymousUser):
    """Application groups in a workspace assigned to ``user`` directly or through one of its groups."""
    assigned = Assignment.objects.filter(application_group=OuterRef("pk")).filter(
        Q(user=user) | Q(group__user=user)
    )
    return ApplicationGroup.objects.filter(Exists(assigned), workspace__isnull=False)


# The application group's, workspace's and host pool's columns each resource row carries (joined,
# not queried per row).
_GROUP_FIELDS = (
    "application_group_id",
    "application_group__name",
    "application_group__workspace_id",
    "application_group__workspace__name",
    "application_group__workspace__friendly_name",
    "application_group__workspace__description",
    "application_group__host_pool_id",
    "application_group__host_pool__name",
    "application_group__host_pool__updated_at",
    "application_group__host_pool__custom_rdp_properties",
)


def _group_values(row: dict) -> dict:
    return {
        "application_group_id": row["application_group_id"],
        "application_group_name": row["application_group__name"],
        "workspace_id": row["application_group__workspace_id"],
        "workspace_name": row["application_group__workspace__name"],
        "workspace_title": row["application_group__workspace__friendly_name"]
        or row["application_group__workspace__name"],
        "workspace_description": row["application_group__workspace__description"],
        "host_pool_id": row["application_group__host_pool_id"],
        "host_pool_name": row["application_group__host_pool__name"],
        "host_pool_updated_at": row["application_group__host_pool__updated_at"],
        "custom_rdp_properties": row["application_group__host_pool__custom_rdp_properties"],
    }


def _file_extensions(raw: str, app: str) -> tuple[str, ...]:
    """``.txt,.log`` as a tuple; entries a client could not take are dropped with a log line, so
    one odd entry does not break the whole feed."""
    extensions: list[str] = []
    for item in raw.replace(";", ",").split(","):
        item = item.strip().lower()
        if not item:
            continue
        if not item.startswith("."):
            item = "." + item
        if not _FILE_EXTENSION.match(item):
            logger.warning("RemoteApp %s: ignored the file extension %r (use e.g. .txt)", app, item)
        elif item not in extensions:
            extensions.append(item)
    return tuple(extensions)


def _command_line(setting: str, arguments: str) -> str:
    # "Do not allow" sends nothing even if arguments were stored earlier under another policy.
    return "" if setting == CommandLineSetting.DO_NOT_ALLOW else arguments


def _query(user: AbstractBaseUser | AnonymousUser | None, *, include_hidden: bool, group_name: str | None = None,
           alias: str | None = None) -> list[Resource]:
    if user is None or not user.is_authenticated or not user.is_active:
        return []
    groups = _visible_groups(user)
    if group_name is not None:
        groups = groups.filter(name__iexact=group_name)
    resources: list[Resource] = []

    if alias is None or alias.lower() == DESKTOP_ALIAS:
        desktops = Desktop.objects.filter(application_group__in=groups).values(
            "pk", "friendly_name", "description", "updated_at", *_GROUP_FIELDS
        )
        for row in desktops:
            resources.append(Resource(
                kind=DESKTOP, pk=row["pk"], alias=DESKTOP_ALIAS, title=row["friendly_name"] or "Session Desktop",
                description=row["description"], updated_at=row["updated_at"], **_group_values(row),
            ))

    apps = RemoteApp.objects.filter(application_group__in=groups)
    if alias is not None:
        apps = apps.filter(name__iexact=alias)
    if not include_hidden:
        apps = apps.filter(show_in_feed=True)
    rows = apps.values(
        "pk", "name", "friendly_name", "description", "updated_at", "file_path", "command_line_setting",
        "command_line_arguments", "file_extensions", "show_in_feed", *_GROUP_FIELDS,
    )
    for row in rows:
        resources.append(Resource(
            kind=REMOTEAPP, pk=row["pk"], alias=row["name"], title=row["friendly_name"] or row["name"],
            description=row["description"], updated_at=row["updated_at"], program=row["file_path"],
            command_line=_command_line(row["command_line_setting"], row["command_line_arguments"]),
            file_extensions=_file_extensions(row["file_extensions"], row["name"]),
            show_in_feed=row["show_in_feed"], **_group_values(row),
        ))
    # By workspace; in each, desktops before RemoteApps, then by title.
    resources.sort(key=lambda r: (r.workspace_title.lower(), r.workspace_id, r.kind != DESKTOP, r.title.lower(),
                                  r.key.lower()))
    return resources


def resources_for(user: AbstractBaseUser | AnonymousUser | None, *,
                  include_hidden: bool = False) -> list[Resource]:
    """The desktops and RemoteApps ``user`` may use, by workspace, desktops first; RemoteApps not
    shown in the feed only with ``include_hidden``. Empty for anonymous and inactive users."""
    return _query(user, include_hidden=include_hidden)


def resource_for(user: AbstractBaseUser | AnonymousUser | None, application_group_name: str,
                 alias: str) -> Resource | None:
    """The one resource at ``<application group>/<alias>`` if ``user`` may use it (hidden
    RemoteApps included), else None: someone else's resource and a missing one look the same."""
    if not isinstance(application_group_name, str) or not isinstance(alias, str):
        return None
    found = _query(user, include_hidden=True, group_name=application_group_name, alias=alias)
    # A RemoteApp named "desktop" in a desktop group cannot exist, so at most one matches.
    return found[0] if found else None


def entitlement_denial(user: AbstractBaseUser, ticket: ConnectionTicket) -> Denial | None:
    """The feed's rule for the gateway's admission (broker/admission.py): the resource a connection ticket
    names must still exist in the same application group and host pool, and be one of ``user``'s."""
    group = ApplicationGroup.objects.filter(pk=ticket.application_group_id).values("name", "host_pool_id").first()
    if group is None:
        return Denial(ErrorCode.ConnectionFailedResourceNotFound, "The application group of this file was deleted.")
    group_name, _, alias = ticket.resource.partition("/")
    if group["host_pool_id"] != ticket.host_pool_id or group_name.lower() != group["name"].lower() or not alias:
        return Denial(ErrorCode.ConnectionFailedResourceNotFound,
                      "The application group of this file was renamed or moved to another host pool.")
    if not _exists(ticket.application_group_id, alias):
        return Denial(ErrorCode.ConnectionFailedResourceNotFound, f"The desktop or RemoteApp {alias!r} was deleted.")
    if resource_for(user, group["name"], alias) is None:
        return Denial(ErrorCode.ConnectionFailedUserNotAuthorized,
                      "You are no longer assigned to this desktop or app (or its workspace was unpublished).")
    return None


def _exists(application_group_id: int, alias: str) -> bool:
    if alias.lower() == DESKTOP_ALIAS:
        return Desktop.objects.filter(application_group_id=application_group_id).exists()
    return RemoteApp.objects.filter(application_group_id=application_group_id, name__iexact=alias).exists()
