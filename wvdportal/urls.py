"""URL root: the composition point that mounts every app.

Each app's ``urls.py`` holds its own full paths (the feed, for example, serves both ``/`` and
``/api/v1/feed/``), so the root mounts them all at ``""``. The REST API's resources share one router,
so the API root at ``/api/v1/`` lists every app's endpoints.
"""
from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from broker.api.views import (
    ConnectionViewSet,
    GatewayInstanceViewSet,
    HostPoolViewSet,
    SessionHostViewSet,
    UserSessionViewSet,
)
from core.api.views import ApiTokenViewSet, CertificateViewSet, RoleAssignmentViewSet, RoleViewSet
from core.api.audit import AuditEventViewSet
from core.api.views import ApiTokenViewSet, CertificateViewSet
from feed.api.views import (
    ApplicationGroupViewSet,
    AssignmentViewSet,
    DesktopViewSet,
    RemoteAppViewSet,
    WorkspaceViewSet,
)

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
router.register("role-assignments", RoleAssignmentViewSet)
router.register("roles", RoleViewSet, basename="role")
router.register("audit", AuditEventViewSet)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("core.urls")),
    path("", include("feed.urls")),
    path("", include("hostagent.urls")),
    path("", include("portal.urls")),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view loads Swagger UI's start-up script from a URL, not inline; its template still has one
    # <style> block and Swagger UI shows data: images, so this page alone allows those.
    path("api/docs/", csp_update({"style-src": ["'unsafe-inline'"], "img-src": ["data:"]})(
        SpectacularSwaggerSplitView.as_view(url_name="schema")), name="swagger-ui"),
]
