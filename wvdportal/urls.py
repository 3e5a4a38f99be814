"""URL root: the composition point that mounts every app."""
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/hostagent/", include("hostagent.urls")),
    path("api/v1/auth/", include("wvdportal.signin_urls")),
    path("api/v1/feed/", include("feed.feed_api_urls")),
    path("api/v1/", include("wvdportal.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("", include("wvdportal.ca_urls")),
    path("", include("feed.urls")),
    path("portal/", include("wvdportal.portal.urls")),
]
