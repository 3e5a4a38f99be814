"""The project's URLs with the OIDC sign-in's, as wvdportal/urls.py has them when WVD_OIDC_ISSUER is set at
start-up (the in-process tests configure settings.OIDC after the URLs were loaded)."""
from core.urls import oidc_patterns
from wvdportal.urls import urlpatterns as project_patterns

urlpatterns = [*oidc_patterns(), *project_patterns]
