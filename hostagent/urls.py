"""Host agent HTTP endpoints, under /api/v1/hostagent/ (the root mounts them at "")."""
from __future__ import annotations

from django.urls import path

from hostagent.views import RegisterView, RenewCertificateView, UserSessionCommandView, UserSessionMessageView

app_name = "hostagent"

urlpatterns = [
    path("api/v1/hostagent/register/", RegisterView.as_view(), name="register"),
    path("api/v1/hostagent/user-sessions/<int:pk>/logoff/", UserSessionCommandView.as_view(command="logoff"), name="logoff"),
    path("api/v1/hostagent/user-sessions/<int:pk>/disconnect/", UserSessionCommandView.as_view(command="disconnect"),
         name="disconnect"),
    path("api/v1/hostagent/user-sessions/<int:pk>/message/", UserSessionMessageView.as_view(), name="message"),
    path("api/v1/hostagent/session-hosts/<int:pk>/renew-certificate/", RenewCertificateView.as_view(), name="renew-certificate"),
]
