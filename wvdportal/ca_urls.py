"""Public URLs of the CA; the URL root mounts them with ``path("", include("wvdportal.ca_urls"))``."""
from django.urls import path

from wvdportal import views

urlpatterns = [
    path("ca.pem", views.ca_certificate, name="ca-certificate"),
]
