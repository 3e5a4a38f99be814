"""The provider's claims: the standard profile and e-mail claims, and the user's group names under
OIDCP_GROUPS_CLAIM in the ID token and at the userinfo endpoint (as Keycloak's or Okta's group mappers do)."""
from __future__ import annotations

from django.conf import settings
from oauth2_provider.oauth2_validators import OAuth2Validator


class GroupsValidator(OAuth2Validator):
    oidc_claim_scope = {**OAuth2Validator.oidc_claim_scope, "preferred_username": "profile",
                        settings.GROUPS_CLAIM: "openid"}

    def get_additional_claims(self, request) -> dict:
        user = request.user
        return {
            "preferred_username": user.get_username(),
            "email": user.email,
            "given_name": user.first_name,
            "family_name": user.last_name,
            settings.GROUPS_CLAIM: sorted(user.groups.values_list("name", flat=True)),
        }
