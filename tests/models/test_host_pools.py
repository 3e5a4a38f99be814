"""Host pools: the type never changes, the session limit is at least one, and the registration token."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from broker.models import REGISTRATION_TOKEN_PREFIX, HostPool
from core.hashing import hash_secret
from tests.models.refusals import assert_invalid, refused_by_database

pytestmark = pytest.mark.django_db


class TestThePoolTypeIsFixed:
    def test_the_model_refuses_changing_the_pool_type(self, pooled_pool):
        pooled_pool.pool_type = "personal"
        assert_invalid(pooled_pool, "A host pool's type cannot change")

    def test_the_database_refuses_changing_the_pool_type(self, personal_pool):
        with refused_by_database("a host pool type cannot change after it is created"):
            HostPool.objects.filter(pk=personal_pool.pk).update(pool_type="pooled")

    def test_the_database_accepts_other_changes(self, pooled_pool):
        HostPool.objects.filter(pk=pooled_pool.pk).update(load_balancer="depth_first", max_session_limit=5)
        pooled_pool.refresh_from_db()
        assert (pooled_pool.load_balancer, pooled_pool.max_session_limit) == ("depth_first", 5)


class TestMaxSessionLimitIsAtLeastOne:
    def test_the_model_refuses_zero(self, pooled_pool):
        pooled_pool.max_session_limit = 0
        assert_invalid(pooled_pool, "greater than or equal to 1")

    def test_the_model_accepts_one(self, pooled_pool):
        pooled_pool.max_session_limit = 1
        pooled_pool.full_clean()

    def test_the_database_refuses_zero(self, pooled_pool):
        with refused_by_database("hostpool_max_session_limit_positive"):
            HostPool.objects.filter(pk=pooled_pool.pk).update(max_session_limit=0)

    def test_the_database_refuses_a_new_pool_with_zero(self, db):
        with refused_by_database("hostpool_max_session_limit_positive"):
            HostPool.objects.bulk_create([HostPool(name="empty-pool", max_session_limit=0)])


class TestRegistrationToken:
    def test_a_new_pool_has_no_registration_token(self, pooled_pool):
        assert (pooled_pool.registration_token_hash, pooled_pool.registration_token_expires_at) == ("", None)
        assert not pooled_pool.registration_token_valid

    def test_only_the_hash_of_the_token_is_stored(self, pooled_pool):
        token, _ = pooled_pool.issue_registration_token()
        stored = HostPool.objects.filter(pk=pooled_pool.pk).values().get()
        assert stored["registration_token_hash"] == hash_secret(token)
        assert not any(token in str(value) for value in stored.values())

    def test_the_token_finds_its_pool(self, pooled_pool, personal_pool):
        token, _ = pooled_pool.issue_registration_token()
        personal_pool.issue_registration_token()
        assert token.startswith(REGISTRATION_TOKEN_PREFIX)
        assert HostPool.for_registration_token(token) == pooled_pool

    def test_the_token_expires_after_the_default_lifetime(self, pooled_pool, settings):
        before = timezone.now()
        _, expires_at = pooled_pool.issue_registration_token()
        lifetime = timedelta(hours=settings.REGISTRATION_TOKEN_DEFAULT_HOURS)
        assert before + lifetime <= expires_at <= timezone.now() + lifetime
        pooled_pool.refresh_from_db()
        assert pooled_pool.registration_token_expires_at == expires_at

    def test_an_expired_token_finds_no_pool(self, pooled_pool):
        token, _ = pooled_pool.issue_registration_token(timedelta(hours=1))
        HostPool.objects.filter(pk=pooled_pool.pk).update(
            registration_token_expires_at=timezone.now() - timedelta(seconds=1)
        )
        pooled_pool.refresh_from_db()
        assert HostPool.for_registration_token(token) is None
        assert not pooled_pool.registration_token_valid

    def test_a_new_token_replaces_the_previous_one(self, pooled_pool):
        old, _ = pooled_pool.issue_registration_token()
        new, _ = pooled_pool.issue_registration_token()
        assert new != old
        assert HostPool.for_registration_token(old) is None
        assert HostPool.for_registration_token(new) == pooled_pool

    def test_a_revoked_token_finds_no_pool(self, pooled_pool):
        token, _ = pooled_pool.issue_registration_token()
        pooled_pool.revoke_registration_token()
        stored = HostPool.objects.get(pk=pooled_pool.pk)
        assert (stored.registration_token_hash, stored.registration_token_expires_at) == ("", None)
        assert HostPool.for_registration_token(token) is None

    @pytest.mark.parametrize(
        "candidate",
        ["", "wvdreg_", "wvdreg_not-a-token", "no-prefix-at-all", REGISTRATION_TOKEN_PREFIX + "x" * 500],
    )
    def test_a_wrong_token_finds_no_pool(self, pooled_pool, candidate):
        pooled_pool.issue_registration_token()
        assert HostPool.for_registration_token(candidate) is None

    def test_the_hash_without_the_token_finds_no_pool(self, pooled_pool):
        pooled_pool.issue_registration_token()
        assert HostPool.for_registration_token(pooled_pool.registration_token_hash) is None

    @pytest.mark.parametrize("lifetime", [timedelta(0), timedelta(seconds=-1)])
    def test_it_refuses_a_token_that_would_not_live(self, pooled_pool, lifetime):
        with pytest.raises(ValidationError):
            pooled_pool.issue_registration_token(lifetime)
        assert HostPool.objects.get(pk=pooled_pool.pk).registration_token_hash == ""

    def test_the_database_refuses_two_pools_with_the_same_token_hash(self, pooled_pool, personal_pool):
        pooled_pool.issue_registration_token()
        with refused_by_database("hostpool_registration_token_unique|registration_token_hash"):
            HostPool.objects.filter(pk=personal_pool.pk).update(
                registration_token_hash=pooled_pool.registration_token_hash,
                registration_token_expires_at=pooled_pool.registration_token_expires_at,
            )

    def test_the_database_refuses_a_token_hash_without_an_expiry(self, pooled_pool):
        with refused_by_database("registration token hash and its expiry"):
            HostPool.objects.filter(pk=pooled_pool.pk).update(registration_token_hash="a" * 64)
