"""A real OpenID Connect provider for tests: a small Django project of its own with django-oauth-toolkit's
OIDC provider, run as a separate process by ``testbed.oidc.OidcProvider`` (never imported by the control
plane). Users sign in at its own login form; its ID tokens carry a groups claim (``validators.py``)."""
