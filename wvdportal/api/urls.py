"""Every app's REST endpoints under /api/v1/ (one router, so the API root lists them all)."""
from django.urls import include, path
from rest_framework.routers import DefaultRouter

router = DefaultRouter()

urlpatterns = [
    path("", include(router.urls)),
]
