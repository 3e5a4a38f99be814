"""Admin actions on user sessions reach the host's agent and show the result (or why not)."""
from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from broker.models import SessionHost, UserSession

pytestmark = pytest.mark.django_db


@pytest.fixture
def session(pooled_pool, member):
    host = SessionHost.objects.create(host_pool=pooled_pool, name="sh-actions")
    return UserSession.objects.create(session_host=host, session_id=3, user=member, username="member")


def run_action(client, action: str, session: UserSession, **extra) -> list[str]:
    response = client.post(reverse("admin:broker_usersession_changelist"),
                           {"action": action, "_selected_action": [session.pk], **extra}, follow=True)
    assert response.status_code == 200
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_logging_off_a_session_of_an_offline_host_says_the_agent_is_not_connected(client, admin_user, session):
    client.force_login(admin_user)
    shown = run_action(client, "log_off", session)
    assert any("offline" in text and "not connected" in text for text in shown), shown


def test_a_message_needs_its_text(client, admin_user, session):
    client.force_login(admin_user)
    assert run_action(client, "send_message", session, title="Hi", text="  ") == ["Type the message text first."]


def test_the_actions_are_offered_only_with_a_role_that_grants_them(client, django_user_model, session, give_role):
    viewer = django_user_model.objects.create_user("viewer", is_staff=True)
    give_role(viewer, "User Session Reader")
    client.force_login(viewer)
    response = client.get(reverse("admin:broker_usersession_changelist"))
    assert response.status_code == 200
    assert b"log_off" not in response.content
