"""An estate for the browser tests and the screenshots, created inside the control plane under test:
``manage.py shell -c "from tests.browser.seed import seed; seed()"``.

Deterministic (a fixed random seed), so the screenshots show the same estate on every run.
"""
from __future__ import annotations

import random
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from broker.models import Connection, HostPool, SessionHost, SessionHostStatusChange, UserSession
from feed.models import ApplicationGroup, Assignment, RemoteApp, Workspace

PASSWORD = "correct-horse-battery-staple"


def _checks(now, *, rdp: bool = True, disk_free: int = 48) -> dict:
    return {"checked_at": now.isoformat(), "sessions": "reported", "checks": [
        {"name": "rdp_listener", "ok": rdp, "fatal": True,
         "detail": "127.0.0.1:3389 accepts connections" if rdp else "127.0.0.1:3389 refused the connection"},
        {"name": "disk_space", "ok": disk_free >= 10, "fatal": False, "detail": f"{disk_free}% free on /"},
        {"name": "agent_version", "ok": True, "fatal": False, "detail": "1.4.2"},
    ]}


def seed() -> None:
    users = get_user_model().objects
    now = timezone.now()
    rng = random.Random(7)

    users.create_user("admin", "admin@example.net", PASSWORD, first_name="Ada", last_name="Admin",
                      is_staff=True, is_superuser=True)
    maya = users.create_user("maya", "maya@example.net", PASSWORD, first_name="Maya", last_name="Member")
    otto = users.create_user("otto", "otto@example.net", PASSWORD, first_name="Otto", last_name="Outsider")
    for name, first, last in [("liam", "Liam", "Baker"), ("noah", "Noah", "Carter"), ("emma", "Emma", "Diaz"),
                              ("olivia", "Olivia", "Evans"), ("lucas", "Lucas", "Fischer")]:
        users.create_user(name, f"{name}@example.net", PASSWORD, first_name=first, last_name=last)
    finance = Group.objects.create(name="Finance")
    finance.user_set.add(maya, users.get(username="emma"))
    Group.objects.create(name="Engineering").user_set.add(users.get(username="noah"), users.get(username="lucas"))

    contoso = Workspace.objects.create(name="contoso", friendly_name="Contoso Corporate",
                                       description="Desktops and apps for everyone at Contoso.")
    labs = Workspace.objects.create(name="labs", friendly_name="Contoso Labs")

    office = HostPool.objects.create(name="office-pool", friendly_name="Office workers", max_session_limit=4,
                                     description="Windows 11 multi-session hosts for office work.")
    dev = HostPool.objects.create(name="dev-pool", friendly_name="Developers", load_balancer="depth_first",
                                  max_session_limit=8)
    personal = HostPool.objects.create(name="personal-pool", friendly_name="Personal desktops",
                                       pool_type="personal", max_session_limit=1)

    def host(pool, name, status="available", *, sessions=(), drained=False, reason="", heartbeat_age=8,
             checks=None, assigned=None):
        h = SessionHost.objects.create(
            host_pool=pool, name=name, status=status, status_reason=reason, allow_new_sessions=not drained,
            last_heartbeat_at=now - timedelta(seconds=heartbeat_age), agent_version="1.4.2",
            health_checks=checks or _checks(now), assigned_user=assigned,
            status_changed_at=now - timedelta(minutes=rng.randint(5, 600)),
        )
        for i, (username, state) in enumerate(sessions, start=2):
            user = users.filter(username=username).first()
            UserSession.objects.create(session_host=h, session_id=i, user=user, username=username, state=state,
                                       started_at=now - timedelta(minutes=rng.randint(3, 400)))
        return h

    host(office, "office-01", sessions=[("maya", "active"), ("liam", "active"), ("emma", "disconnected")])
    host(office, "office-02", sessions=[("olivia", "active")])
    host(office, "office-03", sessions=[("lucas", "active")], drained=True)
    broken = host(office, "office-04", "unavailable", reason="No heartbeat for 3 intervals of 30 s.",
                  heartbeat_age=400, checks=_checks(now - timedelta(seconds=400), rdp=False))
    SessionHostStatusChange.objects.create(session_host=broken, old_status="available", new_status="unavailable",
                                           reason="No heartbeat for 3 intervals of 30 s.",
                                           at=now - timedelta(minutes=6))
    host(dev, "dev-01", sessions=[("noah", "active"), ("lucas", "disconnected")])
    host(dev, "dev-02", "needs_assistance", reason="disk_space: 4% free on /", checks=_checks(now, disk_free=4))
    host(personal, "pc-maya", assigned=maya)

    office_desktop = ApplicationGroup.objects.create(name="office-desktop", friendly_name="Office desktop",
                                                     group_type="desktop", host_pool=office, workspace=contoso)
    office_apps = ApplicationGroup.objects.create(name="office-apps", friendly_name="Office apps",
                                                  group_type="remoteapp", host_pool=office, workspace=contoso)
    RemoteApp.objects.create(application_group=office_apps, name="notepad", friendly_name="Notepad",
                             file_path=r"C:\Windows\System32\notepad.exe", file_extensions=".txt,.log")
    RemoteApp.objects.create(application_group=office_apps, name="calculator", friendly_name="Calculator",
                             file_path=r"C:\Windows\System32\calc.exe")
    dev_desktop = ApplicationGroup.objects.create(name="dev-desktop", friendly_name="Developer desktop",
                                                  group_type="desktop", host_pool=dev, workspace=labs)
    ApplicationGroup.objects.create(name="personal-desktop", friendly_name="My PC", group_type="desktop",
                                    host_pool=personal, workspace=contoso)
    Assignment.objects.create(application_group=office_desktop, user=maya)
    Assignment.objects.create(application_group=office_apps, group=finance)
    Assignment.objects.create(application_group=dev_desktop, user=otto)

    # A day of connections: mostly fine, some failures with their codes.
    failures = ["ConnectionFailedNoHealthyRdshAvailable"] * 5 + ["ConnectionFailedMaxSessionsReached"] * 3 + \
               ["ConnectionFailedReverseConnectTimeout"] * 2 + ["ConnectionFailedTicketExpired"]
    hosts = list(SessionHost.objects.filter(host_pool__in=[office, dev]))
    names = ["maya", "liam", "emma", "olivia", "lucas", "noah"]
    for _ in range(140):
        created = now - timedelta(minutes=rng.randint(2, 24 * 60 - 2))
        username = rng.choice(names)
        pool = dev if username in ("noah", "lucas") and rng.random() < 0.7 else office
        group = dev_desktop if pool == dev else office_desktop
        if rng.random() < 0.13:
            code = rng.choice(failures)
            Connection.objects.create(
                user=users.get(username=username), username=username, application_group=group,
                resource_name=f"{group.name}/desktop", host_pool=pool, state="failed", end_reason="error",
                error_code=code, created_at=created, ticket_accepted_at=created + timedelta(milliseconds=30),
                ended_at=created + timedelta(seconds=rng.randint(1, 20)),
            )
            continue
        chosen = rng.choice([h for h in hosts if h.host_pool_id == pool.pk])
        start = created + timedelta(milliseconds=rng.randint(600, 2400))
        ended = start + timedelta(minutes=rng.randint(5, 240))
        still_open = ended >= now
        Connection.objects.create(
            user=users.get(username=username), username=username, application_group=group,
            resource_name=f"{group.name}/desktop", host_pool=pool, session_host=chosen,
            state="connected" if still_open else "ended", end_reason="" if still_open else "client_closed",
            created_at=created, ticket_accepted_at=created + timedelta(milliseconds=35),
            host_selected_at=created + timedelta(milliseconds=80),
            host_notified_at=created + timedelta(milliseconds=95),
            host_connected_at=start - timedelta(milliseconds=120), relay_started_at=start,
            ended_at=None if still_open else ended,
            bytes_client_to_host=rng.randint(2, 40) * 1_000_000, bytes_host_to_client=rng.randint(50, 900) * 1_000_000,
        )
    # Maya's latest attempt failed: her page and the diagnostics explain why.
    Connection.objects.create(
        user=maya, username="maya", application_group=office_desktop, resource_name="office-desktop/desktop",
        host_pool=office, state="failed", end_reason="error", error_code="ConnectionFailedNoHealthyRdshAvailable",
        error_message="No session host is available for this desktop or app right now. Try again later; if it "
                      "persists, contact your administrator. (Host pool office-pool has 4 hosts: 3 Available, "
                      "1 Unavailable; 1 in drain mode; 2 at the limit of 4 sessions.)",
        created_at=now - timedelta(minutes=1),
        ticket_accepted_at=now - timedelta(minutes=1) + timedelta(milliseconds=42),
        ended_at=now - timedelta(minutes=1) + timedelta(milliseconds=180),
    )
