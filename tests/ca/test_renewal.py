"""Renewal of server-side certificates, the list of those that need a new CSR, and the Celery tasks."""
from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from cryptography import x509
from django.db import InterfaceError, OperationalError

from core import ca, tasks
from core.models import Certificate
from tests.ca.conftest import make_csr

SOON = timedelta(days=10)  # inside the default 30-day renewal window


def _stored(purpose: str, *, lifetime: timedelta = SOON, names=("gw.example.net",), cn="gw") -> Certificate:
    record, key_pem = ca.issue_key_and_certificate(purpose, common_name=cn, dns_names=list(names), lifetime=lifetime)
    ca.store_server_key(record, key_pem)
    return record


def test_renewing_issues_a_successor_with_the_same_names_and_a_new_key(root):
    old = _stored("gateway-tls", names=["gw.example.net", "192.0.2.10"])
    new = ca.renew(old)

    old_cert, new_cert = (x509.load_pem_x509_certificate(r.pem.encode()) for r in (old, new))
    assert Certificate.objects.get(pk=old.pk).renewed_by == new
    assert new.common_name == "gw" and new.purpose == "gateway-tls"
    assert (new_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            == old_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    assert new_cert.public_key().public_numbers() != old_cert.public_key().public_numbers()
    assert new.not_after - new.not_before >= timedelta(days=90)  # the configured lifetime, not the old one
    assert ca.has_server_key(new)


def test_renewing_twice_returns_the_same_successor(root):
    old = _stored("feed-signing", names=())
    assert ca.renew(old) == ca.renew(old)
    assert Certificate.objects.filter(purpose="feed-signing").count() == 2


def test_a_host_agent_certificate_is_not_renewed_server_side(root):
    agent = ca.issue_from_csr(make_csr("sh-01"), "host-agent", common_name="sh-01")
    with pytest.raises(ca.CAError, match="new CSR"):
        ca.renew(agent)


def test_the_root_is_not_renewed_automatically(root):
    with pytest.raises(ca.CAError, match="not renewed automatically"):
        ca.renew(root)


def test_a_certificate_whose_key_is_not_kept_here_is_not_renewed(root):
    record, _ = ca.issue_key_and_certificate("host-rdp", common_name="sh-01", dns_names=["sh-01"])
    with pytest.raises(ca.CAError, match="not kept on this server"):
        ca.renew(record)


def test_a_revoked_certificate_is_not_renewed(root):
    old = _stored("gateway-tls")
    ca.revoke(old, "decommissioned")
    with pytest.raises(ca.CAError, match="revoked"):
        ca.renew(old)


def test_due_certificates_are_those_expiring_within_the_window(root):
    due = _stored("gateway-tls", lifetime=SOON)
    _stored("gateway-tls", lifetime=timedelta(days=60))
    renewed = _stored("gateway-tls", lifetime=SOON)
    ca.renew(renewed)
    revoked = _stored("gateway-tls", lifetime=SOON)
    ca.revoke(revoked, "gone")

    assert list(ca.certificates_due_for_renewal("gateway-tls")) == [due]
    # Once expired, a certificate is no longer offered for renewal.
    assert not ca.certificates_due_for_renewal("gateway-tls", now=due.not_after).exists()


def test_an_agent_renewal_from_a_new_csr_takes_the_old_certificate_off_the_due_list(root):
    old = ca.issue_from_csr(make_csr("sh-01"), "host-agent", common_name="sh-01", lifetime=SOON)
    assert list(ca.certificates_due_for_renewal("host-agent")) == [old]

    new = ca.issue_from_csr(make_csr("sh-01"), "host-agent", common_name="sh-01", renews=old)

    assert Certificate.objects.get(pk=old.pk).renewed_by == new
    assert not ca.certificates_due_for_renewal("host-agent").exists()


# --- tasks -----------------------------------------------------------------------------------------------


def test_the_renewal_task_renews_server_certificates_and_lists_hosts_that_need_a_csr(root, caplog):
    gateway = _stored("gateway-tls", lifetime=SOON)
    feed = _stored("feed-signing", lifetime=SOON, names=(), cn="Contoso Feed")
    _stored("gateway-tls", lifetime=timedelta(days=60))
    agent = ca.issue_from_csr(make_csr("sh-07"), "host-agent", common_name="sh-07", lifetime=SOON)

    with caplog.at_level(logging.WARNING, logger="core.ca"):
        assert tasks.renew_expiring_certificates.apply().get() == 2

    assert Certificate.objects.get(pk=gateway.pk).renewed_by is not None
    assert Certificate.objects.get(pk=feed.pk).renewed_by is not None
    assert Certificate.objects.get(pk=agent.pk).renewed_by is None
    assert "sh-07" in caplog.text and "new CSR" in caplog.text
    # A second run has nothing left to renew.
    assert tasks.renew_expiring_certificates.apply().get() == 0


def test_the_core_tasks_retry_only_transient_database_errors():
    # A refused CSR or any other CA error could never succeed on a retry.
    for task in (tasks.renew_expiring_certificates, tasks.purge_expired_ticket_revocations):
        assert not issubclass(ca.CAError, task.autoretry_for)
        assert set(task.autoretry_for) == {OperationalError, InterfaceError}


def test_renewal_runs_hourly_on_beat(settings):
    entries = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "wvdportal.tasks.renew_expiring_certificates" in entries
    assert "wvdportal.tasks.purge_expired_ticket_revocations" in entries
