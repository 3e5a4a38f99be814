"""python manage.py seed_demo: demo data created once, a working sign-in, a usable registration token."""
from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from broker.models import HostPool
from feed.models import ApplicationGroup, Assignment, Desktop, RemoteApp, Workspace
from feed.resources import resources_for


def _seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def _counts() -> dict[str, int]:
    models = (Workspace, HostPool, ApplicationGroup, Desktop, RemoteApp, Assignment, get_user_model())
    return {model.__name__: model.objects.count() for model in models}


def _token(output: str) -> str:
    return re.search(r"registration token: (\S+)", output).group(1)


def test_it_creates_the_demo_and_the_demo_user_sees_both_resources(db):
    output = _seed("--password", "demo-pass-123")

    demo = get_user_model().objects.get(username="demo")
    assert demo.check_password("demo-pass-123")
    assert [r.key for r in resources_for(demo)] == ["demo-desktop/desktop", "demo-apps/notepad"]
    assert {r.workspace_title for r in resources_for(demo)} == {"Demo"}
    pool = HostPool.objects.get(name="demo-pool")
    assert pool.pool_type == "pooled"
    assert HostPool.for_registration_token(_token(output)) == pool


def test_running_it_again_changes_nothing_but_the_token(db):
    first = _seed("--password", "demo-pass-123")
    counts = _counts()

    second = _seed()

    assert _counts() == counts
    assert get_user_model().objects.get(username="demo").check_password("demo-pass-123")
    assert "(unchanged)" in second
    assert HostPool.for_registration_token(_token(first)) is None  # replaced
    assert HostPool.for_registration_token(_token(second)).name == "demo-pool"


def test_without_a_password_a_new_user_gets_a_random_one_that_works(db):
    output = _seed()

    password = re.search(r"password: (\S+)", output).group(1)
    assert get_user_model().objects.get(username="demo").check_password(password)


def test_a_given_password_replaces_the_existing_one(db):
    _seed("--password", "first-pass-123")

    _seed("--password", "second-pass-456")

    assert get_user_model().objects.get(username="demo").check_password("second-pass-456")


def test_the_demo_user_signs_in_and_gets_the_feed(db, anonymous_api):
    _seed("--password", "demo-pass-123")

    token = anonymous_api.post("/api/v1/auth/token/", {"username": "demo", "password": "demo-pass-123"},
                               format="json").json()["token"]
    anonymous_api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    assert [item["title"] for item in anonymous_api.get("/api/v1/feed/").json()] == ["Demo desktop", "Notepad"]


def test_it_refuses_to_reuse_a_personal_pool_of_the_same_name(db):
    HostPool.objects.create(name="demo-pool", pool_type="personal")

    with pytest.raises(CommandError, match="pooled"):
        _seed()
    assert not Workspace.objects.exists()  # nothing half-made


def test_an_empty_password_is_refused(db):
    with pytest.raises(CommandError, match="empty"):
        _seed("--password", "")
