"""Session hosts: assigned users only in personal pools, one personal host per user and pool, status
transitions recorded, drain mode, replacement by a new registration."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from broker.models import HostInUse, HostPool, SessionHost, SessionHostStatusChange
from core.models import Certificate
from tests.models.refusals import assert_invalid, refused_by_database

pytestmark = pytest.mark.django_db

ASSIGNED_USER_RULE = "only hosts in a personal host pool have an assigned user"
ONE_HOST_RULE = "sessionhost_one_personal_host_per_user_per_pool"


@pytest.fixture
def personal_host(personal_pool, member):
    return SessionHost.objects.create(name="pd-01", host_pool=personal_pool, assigned_user=member)


class TestAnAssignedUserOnlyInAPersonalPool:
    def test_the_model_accepts_an_assigned_user_in_a_personal_pool(self, personal_pool, member):
        SessionHost(name="pd-02", host_pool=personal_pool, assigned_user=member).full_clean()

    def test_the_model_refuses_an_assigned_user_in_a_pooled_pool(self, pooled_pool, member):
        assert_invalid(SessionHost(name="ph-01", host_pool=pooled_pool, assigned_user=member),
                       "Only hosts in a personal host pool have an assigned user")

    def test_the_database_refuses_inserting_a_pooled_host_with_an_assigned_user(self, pooled_pool, member):
        with refused_by_database(ASSIGNED_USER_RULE):
            SessionHost.objects.bulk_create([SessionHost(name="ph-01", host_pool=pooled_pool, assigned_user=member)])

    def test_the_database_refuses_assigning_a_user_to_a_pooled_host(self, pooled_pool, member):
        host = SessionHost.objects.create(name="ph-01", host_pool=pooled_pool)
        with refused_by_database(ASSIGNED_USER_RULE):
            SessionHost.objects.filter(pk=host.pk).update(assigned_user=member)

    def test_the_database_refuses_moving_an_assigned_host_to_a_pooled_pool(self, personal_host, pooled_pool):
        with refused_by_database(ASSIGNED_USER_RULE):
            SessionHost.objects.filter(pk=personal_host.pk).update(host_pool=pooled_pool)

    def test_the_database_accepts_unassigning_a_personal_host(self, personal_host):
        SessionHost.objects.filter(pk=personal_host.pk).update(assigned_user=None)
        assert SessionHost.objects.get(pk=personal_host.pk).assigned_user is None


class TestOnePersonalHostPerUserAndPool:
    def test_a_personal_host_has_a_single_assigned_user(self):
        # One foreign key column: the schema itself cannot hold a second user for a host.
        field = SessionHost._meta.get_field("assigned_user")
        assert field.many_to_one and not field.many_to_many

    def test_the_model_refuses_a_second_host_for_the_same_user(self, personal_host, member):
        assert_invalid(SessionHost(name="pd-02", host_pool=personal_host.host_pool, assigned_user=member),
                       "This user already has a personal host in this pool.")

    def test_the_database_refuses_a_second_host_for_the_same_user(self, personal_host, member):
        other = SessionHost.objects.create(name="pd-02", host_pool=personal_host.host_pool)
        with refused_by_database("assigned_user_id|" + ONE_HOST_RULE):
            SessionHost.objects.filter(pk=other.pk).update(assigned_user=member)

    def test_another_user_may_have_a_host_in_the_same_pool(self, personal_host, outsider):
        host = SessionHost(name="pd-02", host_pool=personal_host.host_pool, assigned_user=outsider)
        host.full_clean()
        host.save()

    def test_the_same_user_may_have_a_host_in_another_personal_pool(self, personal_host, member):
        second_pool = HostPool.objects.create(name="pool-personal-2", pool_type="personal")
        host = SessionHost(name="pd-02", host_pool=second_pool, assigned_user=member)
        host.full_clean()
        host.save()

    def test_many_hosts_may_be_unassigned_in_one_pool(self, personal_pool):
        SessionHost.objects.bulk_create(
            [SessionHost(name=f"pd-{n:02}", host_pool=personal_pool) for n in range(3)]
        )
        assert SessionHost.objects.filter(host_pool=personal_pool, assigned_user=None).count() == 3


class TestSetStatus:
    @pytest.fixture
    def host(self, pooled_pool):
        return SessionHost.objects.create(name="ph-01", host_pool=pooled_pool)

    def test_it_records_a_transition_with_its_reason(self, host):
        assert host.set_status("available", "heartbeat")
        change = SessionHostStatusChange.objects.get(session_host=host)
        assert (change.old_status, change.new_status, change.reason) == ("unavailable", "available", "heartbeat")
        stored = SessionHost.objects.get(pk=host.pk)
        assert (stored.status, stored.status_reason, stored.status_changed_at) == ("available", "heartbeat",
                                                                                   change.at)
        assert (host.status, host.status_changed_at) == ("available", change.at)

    def test_it_records_nothing_when_status_and_reason_are_unchanged(self, host):
        host.set_status("available", "heartbeat")
        assert not host.set_status("available", "heartbeat")
        assert SessionHostStatusChange.objects.filter(session_host=host).count() == 1

    def test_a_new_reason_for_the_same_status_is_recorded(self, host):
        host.set_status("needs_assistance", "disk full")
        assert host.set_status("needs_assistance", "RDP listener unreachable")
        reasons = list(SessionHostStatusChange.objects.filter(session_host=host).order_by("id")
                       .values_list("reason", flat=True))
        assert reasons == ["disk full", "RDP listener unreachable"]

    def test_it_records_every_transition_in_order(self, host):
        for status in ["available", "upgrading", "available", "shutdown"]:
            host.set_status(status)
        transitions = list(SessionHostStatusChange.objects.filter(session_host=host).order_by("id")
                           .values_list("old_status", "new_status"))
        assert transitions == [("unavailable", "available"), ("available", "upgrading"),
                               ("upgrading", "available"), ("available", "shutdown")]

    def test_it_reads_the_stored_status_not_the_stale_instance(self, host):
        SessionHost.objects.get(pk=host.pk).set_status("available")
        host.set_status("shutdown")  # `host` still says unavailable in memory
        last = SessionHostStatusChange.objects.filter(session_host=host).first()
        assert (last.old_status, last.new_status) == ("available", "shutdown")

    def test_a_long_reason_is_cut_to_the_column(self, host):
        host.set_status("needs_assistance", "x" * 1000)
        assert len(SessionHostStatusChange.objects.get(session_host=host).reason) == 300
        assert len(SessionHost.objects.get(pk=host.pk).status_reason) == 300


class TestDrainMode:
    def test_drain_on_and_off_is_stored(self, pooled_pool):
        host = SessionHost.objects.create(name="ph-01", host_pool=pooled_pool)
        host.set_allow_new_sessions(False)
        assert SessionHost.objects.get(pk=host.pk).allow_new_sessions is False
        host.set_allow_new_sessions(True)
        assert SessionHost.objects.get(pk=host.pk).allow_new_sessions is True


class TestReplacement:
    """Who may take a host's name: a new registration only when no agent holds a valid certificate for the
    host, or an admin marked it for replacement."""

    @pytest.fixture
    def host(self, pooled_pool):
        return SessionHost.objects.create(name="ph-01", host_pool=pooled_pool, certificate=certificate("01"))

    def test_a_host_with_a_valid_certificate_refuses_a_new_registration(self, host):
        assert host.holds_valid_certificate() and not host.accepts_registration()
        with pytest.raises(HostInUse, match="'ph-01' is already registered"):
            host.accept_registration(certificate("02"))
        assert SessionHost.objects.get(pk=host.pk).certificate_id == host.certificate_id

    @pytest.mark.parametrize("change", [
        {"revoked_at": timezone.now()},
        {"not_before": timezone.now() - timedelta(days=60), "not_after": timezone.now() - timedelta(seconds=1)},
    ], ids=["revoked", "expired"])
    def test_a_host_whose_certificate_is_no_longer_valid_accepts_one(self, host, change):
        Certificate.objects.filter(pk=host.certificate_id).update(**change)
        host = SessionHost.objects.get(pk=host.pk)
        assert host.accepts_registration()
        new = certificate("02")
        assert host.accept_registration(new).pk == Certificate.objects.get(serial_number="01").pk
        assert SessionHost.objects.get(pk=host.pk).certificate == new

    def test_marking_records_who_and_when_and_lets_one_registration_through(self, host, admin_user):
        assert host.mark_for_replacement(by=admin_user)
        stored = SessionHost.objects.get(pk=host.pk)
        assert stored.marked_for_replacement_by == admin_user
        assert timezone.now() - stored.marked_for_replacement_at < timedelta(minutes=1)

        new = certificate("02")
        previous = stored.accept_registration(new)

        assert previous.serial_number == "01"
        stored = SessionHost.objects.get(pk=host.pk)
        assert (stored.certificate, stored.marked_for_replacement_at, stored.marked_for_replacement_by) == (
            new, None, None)
        with pytest.raises(HostInUse):
            stored.accept_registration(certificate("03"))

    def test_the_first_mark_is_kept(self, host, admin_user, django_user_model):
        other = django_user_model.objects.create_user("other-admin", is_staff=True)
        assert host.mark_for_replacement(by=admin_user)
        first_at = SessionHost.objects.get(pk=host.pk).marked_for_replacement_at
        assert not SessionHost.objects.get(pk=host.pk).mark_for_replacement(by=other)
        stored = SessionHost.objects.get(pk=host.pk)
        assert (stored.marked_for_replacement_by, stored.marked_for_replacement_at) == (admin_user, first_at)

    def test_cancelling_the_mark_refuses_registrations_again(self, host, admin_user):
        host.mark_for_replacement(by=admin_user)
        assert SessionHost.objects.get(pk=host.pk).cancel_replacement()
        assert not SessionHost.objects.get(pk=host.pk).cancel_replacement()
        assert not SessionHost.objects.get(pk=host.pk).accepts_registration()

    def test_a_stale_instance_reads_the_stored_row(self, host, admin_user):
        stale = SessionHost.objects.get(pk=host.pk)
        host.mark_for_replacement(by=admin_user)
        stale.accept_registration(certificate("02"))  # `stale` still says unmarked in memory
        with pytest.raises(HostInUse):
            stale.accept_registration(certificate("03"))


def certificate(serial: str) -> Certificate:
    now = timezone.now()
    return Certificate.objects.create(
        serial_number=serial, subject="CN=ph-01", common_name="ph-01", purpose="host-agent",
        fingerprint_sha256=serial * 32, not_before=now - timedelta(days=1), not_after=now + timedelta(days=30),
        pem="-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
    )
