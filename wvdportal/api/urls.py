"""Every app's REST endpoints under /api/v1/ (one router, so the API root lists them all)."""
from django.urls import include, path
from rest_framework.routers import DefaultRouter

from broker.api.views import (
    ConnectionViewSet,
    GatewayInstanceViewSet,
    HostPoolViewSet,
    SessionHostViewSet,
    UserSessionViewSet,
)
from feed.api.views import (
    ApplicationGroupViewSet,
    AssignmentViewSet,
    DesktopViewSet,
    RemoteAppViewSet,
    WorkspaceViewSet,
)
from wvdportal.api import schema  # noqa: F401  (registers the token authentication's OpenAPI description)
from wvdportal.api.views import ApiTokenViewSet, CertificateViewSet

router = DefaultRouter()
router.register("workspaces", WorkspaceViewSet)
router.register("hostpools", HostPoolViewSet)
router.register("applicationgroups", ApplicationGroupViewSet)
router.register("assignments", AssignmentViewSet)
router.register("desktops", DesktopViewSet)
router.register("remoteapps", RemoteAppViewSet)
router.register("sessionhosts", SessionHostViewSet)
router.register("usersessions", UserSessionViewSet)
router.register("connections", ConnectionViewSet)
router.register("gatewayinstances", GatewayInstanceViewSet)
router.register("certificates", CertificateViewSet)
router.register("tokens", ApiTokenViewSet, basename="apitoken")

urlpatterns = [
    path("", include(router.urls)),
]
