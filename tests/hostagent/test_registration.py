"""POST /api/v1/hostagent/register/: the registration token and a CSR in, a host-agent certificate out."""
from __future__ import annotations

from datetime import timedelta
from ipaddress import ip_network

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.test import TestCase
from django.utils import timezone

from broker.models import HostPool, SessionHost
from core import ca
from core.models import Certificate
from hostagent import registration
from hostagent.agent.state import make_csr, new_key
from wire import hostchannel

URL = "/api/v1/hostagent/register/"

pytestmark = pytest.mark.usefixtures("eager_tasks")


@pytest.fixture
def token(pooled_pool, our_ca) -> str:
    value, _ = pooled_pool.issue_registration_token()
    return value


def register(client, token: str, name: str = "host-a", csr: str | None = None, key=None, address: str = "127.0.0.1"):
    csr = csr if csr is not None else make_csr(key or new_key(), name)
    return client.post(URL, {"token": token, "name": name, "csr": csr}, format="json", REMOTE_ADDR=address)


def test_it_registers_a_host_and_returns_its_certificate_and_the_ca(anonymous_api, token, pooled_pool):
    key = new_key()
    response = register(anonymous_api, token, key=key)
    assert response.status_code == 201, response.json()
    body = response.json()
    host = SessionHost.objects.get(pk=body["session_host_id"])
    assert (host.name, host.host_pool, body["host_pool"]) == ("host-a", pooled_pool, "pool-a")
    certificate = x509.load_pem_x509_certificate(body["certificate"].encode())
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert certificate.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
    certificate.verify_directly_issued_by(x509.load_pem_x509_certificate(body["ca_certificate"].encode()))
    assert host.certificate.pem == body["certificate"] and host.certificate.purpose == "host-agent"
    assert host.status == "unavailable"  # until its channel is up and a heartbeat says it is healthy
    assert body["channel_path"] == "/ws/hostagent/" and body["heartbeat_interval"] == 30


# --- a name the pool already has ------------------------------------------------------------------

def certificate_of(answer: dict) -> Certificate:
    return Certificate.objects.get(pem=answer["certificate"])


def test_re_registering_a_live_host_is_refused_and_its_agent_keeps_its_certificate(anonymous_api, token):
    first = register(anonymous_api, token).json()

    response = register(anonymous_api, token)

    assert response.status_code == 409
    assert response.json() == {"code": "host_in_use", "detail": (
        "Session host 'host-a' is already registered and its agent's certificate is still valid. To replace the "
        "machine, an administrator first marks the host for replacement (or removes it).")}
    host = SessionHost.objects.get()
    assert host.certificate == certificate_of(first) and host.certificate.is_valid_now
    # Refused before anything was issued for the caller's key.
    assert Certificate.objects.filter(purpose="host-agent").count() == 1


def test_any_spelling_of_the_name_is_the_same_live_host(anonymous_api, token):
    register(anonymous_api, token, name="host-a")
    response = register(anonymous_api, token, name="HOST-A")
    assert response.status_code == 409 and response.json()["code"] == "host_in_use"


def test_a_host_marked_for_replacement_is_re_bound_and_the_mark_is_used_up(anonymous_api, token, admin_user):
    first = register(anonymous_api, token).json()
    host = SessionHost.objects.get()
    assert host.mark_for_replacement(by=admin_user)

    second = register(anonymous_api, token)

    assert second.status_code == 201, second.json()
    assert second.json()["session_host_id"] == first["session_host_id"]
    host.refresh_from_db()
    assert host.certificate == certificate_of(second.json())
    assert (host.marked_for_replacement_at, host.marked_for_replacement_by) == (None, None)
    old = certificate_of(first)
    assert old.revoked_at is not None
    assert old.revocation_reason.startswith("Replaced by a new registration of the host, marked for replacement "
                                            "by admin at ")
    assert SessionHost.objects.count() == 1
    # Used up: the next registration of the name is refused again.
    assert register(anonymous_api, token).json()["code"] == "host_in_use"


def test_the_replaced_agent_loses_its_channel(anonymous_api, token, admin_user, monkeypatch):
    closed = []
    monkeypatch.setattr(registration, "close_host_channel", lambda *args: closed.append(args))
    register(anonymous_api, token)
    SessionHost.objects.get().mark_for_replacement(by=admin_user)

    with TestCase.captureOnCommitCallbacks(execute=True):
        assert register(anonymous_api, token).status_code == 201

    [(host_id, code, reason)] = closed
    assert (host_id, code, reason) == (SessionHost.objects.get().pk, hostchannel.CLOSE_CREDENTIALS_SUPERSEDED,
                                       "The host was registered again.")


def test_a_cancelled_mark_refuses_again(anonymous_api, token, admin_user):
    register(anonymous_api, token)
    host = SessionHost.objects.get()
    host.mark_for_replacement(by=admin_user)
    assert host.cancel_replacement()
    assert register(anonymous_api, token).json()["code"] == "host_in_use"


def test_a_host_whose_certificate_expired_can_be_registered_again(anonymous_api, token):
    first = register(anonymous_api, token).json()
    old = certificate_of(first)
    Certificate.objects.filter(pk=old.pk).update(not_before=timezone.now() - timedelta(days=90),
                                                 not_after=timezone.now() - timedelta(seconds=1))

    second = register(anonymous_api, token)

    assert second.status_code == 201, second.json()
    assert SessionHost.objects.get().certificate == certificate_of(second.json())
    old.refresh_from_db()
    assert old.revoked_at is not None and old.revocation_reason == "Replaced by a new registration of the host."


def test_a_host_whose_certificate_was_revoked_can_be_registered_again(anonymous_api, token):
    first = register(anonymous_api, token).json()
    ca.revoke(certificate_of(first), "The machine was stolen.")

    second = register(anonymous_api, token)

    assert second.status_code == 201, second.json()
    assert SessionHost.objects.get().certificate == certificate_of(second.json())
    assert certificate_of(first).revocation_reason == "The machine was stolen."  # the first reason stays


def test_a_host_without_a_certificate_can_be_registered(anonymous_api, token, pooled_pool):
    host = SessionHost.objects.create(host_pool=pooled_pool, name="host-a")  # made through the API, say
    response = register(anonymous_api, token)
    assert response.status_code == 201 and response.json()["session_host_id"] == host.pk


def test_a_host_in_the_middle_of_a_renewal_is_live_while_the_certificate_it_renews_is_valid(
        anonymous_api, token):
    first = register(anonymous_api, token).json()
    old, host = certificate_of(first), SessionHost.objects.get()
    # A renewal issued a successor, which has since been revoked; the agent still holds the old one,
    # which broker.hostcertificates accepts until the agent switches.
    successor = ca.issue_from_csr(make_csr(new_key(), "host-a").encode(), "host-agent", common_name="host-a",
                                  renews=old)
    SessionHost.objects.filter(pk=host.pk).update(certificate=successor)
    ca.revoke(successor, "Revoked by hand.")

    assert register(anonymous_api, token).json()["code"] == "host_in_use"


def test_registering_a_removed_host_makes_a_new_one(anonymous_api, token):
    first = register(anonymous_api, token).json()
    SessionHost.objects.filter(pk=first["session_host_id"]).delete()

    second = register(anonymous_api, token)

    assert second.status_code == 201, second.json()
    assert second.json()["session_host_id"] != first["session_host_id"]


def test_a_name_that_belongs_to_another_pool_is_refused(anonymous_api, token, personal_pool):
    SessionHost.objects.create(host_pool=personal_pool, name="host-a")
    response = register(anonymous_api, token)
    assert response.status_code == 409 and response.json()["code"] == "name_taken"
    assert not Certificate.objects.filter(purpose="host-agent").exists()


def test_an_expired_token_is_refused_with_a_clear_message(anonymous_api, pooled_pool, our_ca):
    token, _ = pooled_pool.issue_registration_token()
    expired = timezone.now() - timedelta(seconds=1)
    HostPool.objects.filter(pk=pooled_pool.pk).update(registration_token_expires_at=expired)
    response = register(anonymous_api, token)
    assert response.status_code == 401
    assert response.json() == {"code": "token_expired",
                               "detail": "The registration token has expired; ask an administrator for a new one."}
    assert response["WWW-Authenticate"].startswith("RegistrationToken")
    assert not SessionHost.objects.exists()


def test_a_wrong_token_is_refused(anonymous_api, token):
    response = register(anonymous_api, token[:-4] + "AAAA")
    assert response.status_code == 401 and response.json()["code"] == "token_invalid"
    assert not SessionHost.objects.exists()


def test_a_revoked_token_is_refused(anonymous_api, token, pooled_pool):
    pooled_pool.revoke_registration_token()
    response = register(anonymous_api, token)
    assert response.status_code == 401 and response.json()["code"] == "token_invalid"


def test_a_csr_that_is_not_a_csr_is_refused(anonymous_api, token):
    response = register(anonymous_api, token, csr="-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n")
    assert response.status_code == 400 and response.json()["code"] == "csr_rejected"
    assert not SessionHost.objects.exists()


def test_a_csr_for_another_name_is_refused(anonymous_api, token):
    response = register(anonymous_api, token, name="host-a", csr=make_csr(new_key(), "host-b"))
    assert response.status_code == 400
    assert "must name exactly 'host-a'" in response.json()["detail"]


@pytest.mark.parametrize("body, field", [
    ({"name": "host-a", "csr": "x"}, "token"),
    ({"token": "t", "csr": "x"}, "name"),
    ({"token": "t", "name": "host a!", "csr": "x"}, "name"),
    ({"token": "t", "name": "h" * 65, "csr": "x"}, "name"),
    ({"token": "t", "name": "host-a"}, "csr"),
])
def test_missing_or_malformed_fields_are_refused(anonymous_api, token, body, field):
    response = anonymous_api.post(URL, body, format="json")
    assert response.status_code == 400 and field in response.json()


def test_a_body_that_is_not_json_is_refused(anonymous_api, token):
    response = anonymous_api.generic("POST", URL, "token=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415


def test_failures_are_throttled_per_token_and_address(anonymous_api, token, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(2):
        assert register(anonymous_api, "wvdreg_wrong").status_code == 401
    third = register(anonymous_api, "wvdreg_wrong")
    assert third.status_code == 429 and third.json()["code"] == "rate_limited"
    assert third["Retry-After"] == str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    assert register(anonymous_api, "wvdreg_wrong").status_code == 429

    # Another address with that token is a pair of its own; so is the right token from this address.
    assert register(anonymous_api, "wvdreg_wrong", address="192.0.2.7").status_code == 401
    assert register(anonymous_api, token).status_code == 201


def test_a_guesser_at_the_same_address_does_not_lock_out_a_host_with_the_right_token(anonymous_api, token,
                                                                                    settings):
    settings.AXES_FAILURE_LIMIT = 3
    for number in range(12):
        register(anonymous_api, f"wvdreg_guess{number}", address="192.0.2.50")

    assert register(anonymous_api, token, address="192.0.2.50").status_code == 201


def test_a_host_that_keeps_failing_with_its_token_is_refused_from_its_address_only(anonymous_api, token, settings):
    settings.AXES_FAILURE_LIMIT = 2
    bad_csr = "-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n"
    assert register(anonymous_api, token, csr=bad_csr).status_code == 400
    assert register(anonymous_api, token, csr=bad_csr).status_code == 429

    assert register(anonymous_api, token).status_code == 429
    assert register(anonymous_api, token, address="192.0.2.8").status_code == 201


def test_behind_a_trusted_proxy_the_forwarded_client_is_throttled(anonymous_api, token, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.TRUSTED_PROXIES = (ip_network("10.0.0.0/8"),)

    def through_proxy(client_address: str):
        return anonymous_api.post(URL, {"token": "wvdreg_wrong", "name": "host-a", "csr": "x"}, format="json",
                                  REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR=client_address)

    assert [through_proxy("203.0.113.9").status_code for _ in range(3)] == [401, 429, 429]
    assert through_proxy("203.0.113.10").status_code == 401  # another client behind the same proxy


def test_the_refusals_log_neither_the_token_nor_a_usable_part_of_it(anonymous_api, token, settings, caplog):
    settings.AXES_FAILURE_LIMIT = 1
    wrong = "wvdreg_" + "s3cr3t" * 7

    register(anonymous_api, wrong, address="192.0.2.9")
    register(anonymous_api, wrong, address="192.0.2.9")

    refusals = [record.getMessage() for record in caplog.records if "refused" in record.getMessage()]
    assert len(refusals) == 2  # the failure that reached the limit, then the next attempt: one line each
    assert all("192.0.2.9" in line for line in refusals)
    assert "s3cr3t" not in caplog.text


def test_successes_do_not_count_towards_the_limit(anonymous_api, token, settings):
    settings.AXES_FAILURE_LIMIT = 1
    for name in ("host-a", "host-b", "host-c"):
        assert register(anonymous_api, token, name=name).status_code == 201


def test_without_a_ca_registration_answers_503(anonymous_api, pooled_pool, settings, tmp_path):
    settings.DATA_DIR = tmp_path  # no CA here
    token, _ = pooled_pool.issue_registration_token()
    response = register(anonymous_api, token)
    assert response.status_code == 503 and response.json()["code"] == "ca_unavailable"
    assert "initca" in response.json()["detail"]
    assert not ca.ca_exists()
