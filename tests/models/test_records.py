"""Records the system writes: connections (a failure has an error code, byte counts are not negative),
certificates (a validity window), gateway instances (a real port), user sessions (one per id and host)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from broker.models import Connection, GatewayInstance, SessionHost, UserSession
from core.models import Certificate
from tests.models.refusals import assert_invalid, refused_by_database

pytestmark = pytest.mark.django_db


class TestAFailedConnectionHasAnErrorCode:
    def test_the_model_refuses_a_failure_without_a_code(self):
        assert_invalid(Connection(state="failed"), "connection_failed_has_error_code")

    def test_the_model_accepts_a_failure_with_a_code(self):
        Connection(state="failed", error_code="ConnectionFailedNoHealthyRdshAvailable").full_clean()

    def test_the_database_refuses_inserting_a_failure_without_a_code(self):
        with refused_by_database("connection_failed_has_error_code"):
            Connection.objects.create(state="failed")

    def test_the_database_refuses_failing_a_connection_without_a_code(self):
        connection = Connection.objects.create()
        with refused_by_database("connection_failed_has_error_code"):
            Connection.objects.filter(pk=connection.pk).update(state="failed")

    def test_the_database_refuses_clearing_the_code_of_a_failure(self):
        connection = Connection.objects.create(state="failed", error_code="ConnectionFailedClientDisconnect")
        with refused_by_database("connection_failed_has_error_code"):
            Connection.objects.filter(pk=connection.pk).update(error_code="")


class TestBytesAreNotNegative:
    @pytest.mark.parametrize("field", ["bytes_client_to_host", "bytes_host_to_client"])
    def test_the_model_refuses_negative_bytes(self, field):
        assert_invalid(Connection(**{field: -1}), "connection_bytes_not_negative")

    @pytest.mark.parametrize("field", ["bytes_client_to_host", "bytes_host_to_client"])
    def test_the_database_refuses_negative_bytes(self, field):
        connection = Connection.objects.create(**{field: 10})
        with refused_by_database("connection_bytes_not_negative"):
            Connection.objects.filter(pk=connection.pk).update(**{field: -1})

    def test_the_database_accepts_large_counts(self):
        connection = Connection.objects.create(bytes_client_to_host=2**40, bytes_host_to_client=2**62)
        assert Connection.objects.get(pk=connection.pk).bytes_host_to_client == 2**62


def certificate(not_before, not_after, serial: str = "0a1b") -> Certificate:
    return Certificate(
        serial_number=serial, subject="CN=sh-01", common_name="sh-01", purpose="host-agent",
        fingerprint_sha256=serial.rjust(64, "0"), not_before=not_before, not_after=not_after,
        pem="-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
    )


class TestACertificateHasAValidityWindow:
    def test_the_model_accepts_not_after_later_than_not_before(self):
        now = timezone.now()
        certificate(now, now + timedelta(days=30)).full_clean()

    @pytest.mark.parametrize("length", [timedelta(0), timedelta(days=-1)])
    def test_the_model_refuses_an_empty_or_reversed_window(self, length):
        now = timezone.now()
        assert_invalid(certificate(now, now + length), "certificate_validity_window")

    @pytest.mark.parametrize("length", [timedelta(0), timedelta(days=-1)])
    def test_the_database_refuses_an_empty_or_reversed_window(self, length):
        now = timezone.now()
        with refused_by_database("certificate_validity_window"):
            Certificate.objects.bulk_create([certificate(now, now + length)])

    def test_the_database_refuses_moving_not_after_before_not_before(self):
        now = timezone.now()
        stored = certificate(now, now + timedelta(days=30))
        stored.save()
        with refused_by_database("certificate_validity_window"):
            Certificate.objects.filter(pk=stored.pk).update(not_after=now - timedelta(seconds=1))


class TestAGatewayInstanceHasARealPort:
    @pytest.mark.parametrize("port", [0, 65536])
    def test_the_database_refuses_a_port_out_of_range(self, port):
        with refused_by_database("gatewayinstance_port_range"):
            GatewayInstance.objects.bulk_create([GatewayInstance(name="gw-1", public_host="gw.example.net",
                                                                 public_port=port)])

    def test_the_model_refuses_port_zero(self):
        assert_invalid(GatewayInstance(name="gw-1", public_host="gw.example.net", public_port=0),
                       "greater than or equal to 1")


class TestAUserSessionIsUniquePerHost:
    def test_the_database_refuses_the_same_session_id_twice_on_a_host(self, pooled_pool):
        host = SessionHost.objects.create(name="ph-01", host_pool=pooled_pool)
        UserSession.objects.create(session_host=host, session_id=2, username="member")
        with refused_by_database("usersession_unique_per_host|session_id"):
            UserSession.objects.bulk_create([UserSession(session_host=host, session_id=2, username="other")])
