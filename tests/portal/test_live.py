"""Live updates: a change to a host or its sessions, made anywhere, reaches every open staff page over
/ws/portal/ as the ids of what changed; no one else may listen."""
from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.urls import reverse

from broker.models import SessionHost, UserSession
from portal import live
from portal.access import is_portal_user
from portal.consumers import PortalConsumer
from portal.routing import websocket_urlpatterns
from tests.hostagent.conftest import AgentPeer, checks
from tests.portal.conftest import browser, posting_in_a_thread

TIMEOUT = 10  # an upper bound for a loaded machine, not a speed assertion
ORIGIN = (b"origin", b"http://127.0.0.1")


async def socket_for(user=None, origin=ORIGIN) -> WebsocketCommunicator:
    headers = [origin] if origin else []
    if user is not None:
        client = await database_sync_to_async(browser)(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/portal/", headers=headers)


async def open_socket(user) -> WebsocketCommunicator:
    communicator = await socket_for(user)
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    return communicator


async def next_message(communicator: WebsocketCommunicator, wanted: str, host_id: int) -> dict:
    """The next message of type ``wanted`` about ``host_id`` (others, from the same change, are skipped)."""
    while True:
        message = await communicator.receive_json_from(timeout=TIMEOUT)
        if message["type"] == wanted and message["host_id"] == host_id:
            return message


@pytest.mark.django_db(transaction=True)
async def test_a_status_change_reaches_an_open_staff_page(admin_user, pooled_pool):
    host = await database_sync_to_async(SessionHost.objects.create)(host_pool=pooled_pool, name="h1")
    page = await open_socket(admin_user)

    await database_sync_to_async(host.set_status)("available", "checks pass")

    assert await next_message(page, "host", host.pk) == {"type": "host", "host_id": host.pk, "host_pool_id": None}
    await page.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_new_host_and_its_sessions_are_announced_with_the_pool(admin_user, pooled_pool):
    page = await open_socket(admin_user)

    host = await database_sync_to_async(SessionHost.objects.create)(host_pool=pooled_pool, name="h-new")
    assert (await next_message(page, "host", host.pk))["host_pool_id"] == pooled_pool.pk

    await database_sync_to_async(UserSession.objects.create)(session_host=host, session_id=1, username="u")
    assert await next_message(page, "sessions", host.pk) == {"type": "sessions", "host_id": host.pk}
    await page.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_heartbeat_from_a_real_agent_reaches_the_page(admin_user, host_a):
    page = await open_socket(admin_user)
    agent = AgentPeer(host_a)
    await agent.connect()

    await agent.heartbeat(checks(disk=False))

    assert (await next_message(page, "host", host_a.host.pk))["host_id"] == host_a.host.pk
    await agent.close()
    await page.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_the_drain_switch_is_announced(admin_user, pooled_pool):
    host = await database_sync_to_async(SessionHost.objects.create)(host_pool=pooled_pool, name="h1")
    page = await open_socket(admin_user)
    staff = await database_sync_to_async(browser)(admin_user)

    await posting_in_a_thread(staff)(reverse("portal:host-drain", args=[host.pk]),
                                                            {"allow": "0"})

    assert (await next_message(page, "host", host.pk))["host_pool_id"] == pooled_pool.pk
    await page.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_change_rolled_back_is_never_announced(admin_user, pooled_pool):
    page = await open_socket(admin_user)

    def rolled_back() -> None:
        with transaction.atomic():
            SessionHost.objects.create(host_pool=pooled_pool, name="never")
            transaction.set_rollback(True)

    await database_sync_to_async(rolled_back)()
    await get_channel_layer().group_send(live.GROUP, live.sessions_changed(-1))  # a marker sent after it

    assert await page.receive_json_from(timeout=TIMEOUT) == {"type": "sessions", "host_id": -1}
    await page.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_plain_users_and_anonymous_visitors_are_refused(member):
    for user in (member, None):
        communicator = await socket_for(user)
        connected, code = await communicator.connect(timeout=TIMEOUT)
        await communicator.disconnect()  # end the refused consumer too, or it waits on the layer forever
        assert not connected and code == 4403


@pytest.mark.django_db(transaction=True)
async def test_the_socket_lets_in_exactly_whom_the_pages_let_in(admin_user, member, django_user_model, give_role):
    """One rule (access.is_portal_user) for the pages and the socket, whatever user the scope holds: none at
    all (no auth middleware), a plain user, staff without a role, an inactive account with a role, an
    active one with a role, a superuser."""
    former = await database_sync_to_async(django_user_model.objects.create_user)("former", is_active=False)
    staff = await database_sync_to_async(django_user_model.objects.create_user)("staff", is_staff=True)
    reader = await database_sync_to_async(django_user_model.objects.create_user)("reader")
    for holder in (former, reader):
        await database_sync_to_async(give_role)(holder, "Workspace Reader")
    admitted = {}
    cast = (None, member, staff, former, reader, admin_user)
    for user in cast:
        communicator = WebsocketCommunicator(PortalConsumer.as_asgi(), "/ws/portal/")
        if user is not None:
            communicator.scope["user"] = user
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        await communicator.disconnect()
        admitted[getattr(user, "username", None)] = connected

    assert admitted == {None: False, "member": False, "staff": False, "former": False, "reader": True, "admin": True}
    rule = {getattr(u, "username", None): await database_sync_to_async(is_portal_user)(u) for u in cast}
    assert admitted == rule


@pytest.mark.django_db(transaction=True)
async def test_a_pool_scoped_reader_hears_of_their_pool_s_hosts_only(django_user_model, give_role, admin_user):
    from broker.models import HostPool  # noqa: PLC0415

    pools = [await database_sync_to_async(HostPool.objects.create)(name=name) for name in ("mine", "theirs")]
    reader = await database_sync_to_async(django_user_model.objects.create_user)("reader")
    role = await database_sync_to_async(give_role)(reader, "Host Pool Reader", pools[0])
    page = await open_socket(reader)

    theirs = await database_sync_to_async(SessionHost.objects.create)(host_pool=pools[1], name="h-theirs")
    await database_sync_to_async(UserSession.objects.create)(session_host=theirs, session_id=1, username="u")
    mine = await database_sync_to_async(SessionHost.objects.create)(host_pool=pools[0], name="h-mine")
    await database_sync_to_async(UserSession.objects.create)(session_host=mine, session_id=1, username="u")
    # Messages arrive in order: everything about their host was dropped before the first about mine.
    assert await page.receive_json_from(timeout=TIMEOUT) == {"type": "host", "host_id": mine.pk,
                                                              "host_pool_id": pools[0].pk}
    assert await page.receive_json_from(timeout=TIMEOUT) == {"type": "sessions", "host_id": mine.pk}

    await database_sync_to_async(role.delete)()
    await database_sync_to_async(mine.set_status)("available", "checks pass")
    assert await page.receive_nothing(timeout=1)
    await page.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_page_of_another_site_cannot_open_the_socket(admin_user):
    communicator = await socket_for(admin_user, origin=(b"origin", b"https://evil.example"))

    connected, _ = await communicator.connect(timeout=TIMEOUT)
    await communicator.disconnect()

    assert not connected


@pytest.mark.django_db(transaction=True)
async def test_what_the_page_sends_is_ignored(admin_user):
    page = await open_socket(admin_user)

    await page.send_json_to({"type": "anything"})

    assert await page.receive_nothing(timeout=0.2)
    await page.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_async_producers_notify_with_the_async_helpers(admin_user):
    page = await open_socket(admin_user)

    await live.anotify_host_changed(41, 7)
    await live.anotify_sessions_changed(41)

    assert await page.receive_json_from(timeout=TIMEOUT) == {"type": "host", "host_id": 41, "host_pool_id": 7}
    assert await page.receive_json_from(timeout=TIMEOUT) == {"type": "sessions", "host_id": 41}
    await page.disconnect()
