"""Host agent HTTP endpoints, mounted at /api/v1/hostagent/."""
from __future__ import annotations

from django.urls import path

from hostagent.views import RegisterView, RenewCertificateView, UserSessionCommandView, UserSessionMessageView

app_name = "hostagent"

urlpatterns = [
    path("register/", RegisterView.as_view(), name="register"),
    path("user-sessions/<int:pk>/logoff/", UserSessionCommandView.as_view(command="logoff"), name="logoff"),
    path("user-sessions/<int:pk>/disconnect/", UserSessionCommandView.as_view(command="disconnect"),
         name="disconnect"),
    path("user-sessions/<int:pk>/message/", UserSessionMessageView.as_view(), name="message"),
    path("session-hosts/<int:pk>/renew-certificate/", RenewCertificateView.as_view(), name="renew-certificate"),
]
