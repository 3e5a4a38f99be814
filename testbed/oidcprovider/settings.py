"""Settings of the test OIDC provider, from the environment ``testbed.oidc.OidcProvider`` gives it:
OIDCP_DIR (its database and RSA signing key, made at start, never committed), OIDCP_ISSUER (https://...),
OIDCP_GROUPS_CLAIM (the claim that lists the user's groups)."""
from __future__ import annotations

import os
from pathlib import Path

DATA_DIR = Path(os.environ["OIDCP_DIR"])
ISSUER = os.environ["OIDCP_ISSUER"]
GROUPS_CLAIM = os.environ.get("OIDCP_GROUPS_CLAIM", "groups")

SECRET_KEY = (DATA_DIR / "secret-key").read_text().strip()
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
    "testbed.oidcprovider",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "testbed.oidcprovider.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                       "django.contrib.auth.context_processors.auth"]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATA_DIR / "provider.sqlite3"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # test users only
USE_TZ = True
LOGIN_URL = "/accounts/login/"
# Cookies the browser keeps apart from the control plane's: both run on 127.0.0.1, and cookies do not
# tell ports apart.
SESSION_COOKIE_NAME = "oidcp_session"
CSRF_COOKIE_NAME = "oidcp_csrftoken"
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True

OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_ISS_ENDPOINT": ISSUER,
    "OIDC_RSA_PRIVATE_KEY": (DATA_DIR / "signing-key.pem").read_text(),
    "PKCE_REQUIRED": True,
    "OAUTH2_VALIDATOR_CLASS": "testbed.oidcprovider.validators.GroupsValidator",
    "SCOPES": {"openid": "OpenID Connect", "email": "E-mail address", "profile": "Name"},
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
