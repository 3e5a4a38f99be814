"""The JSON feed, mounted at /api/v1/feed/."""
from __future__ import annotations

from django.urls import path

from feed.views import FeedApiView

urlpatterns = [
    path("", FeedApiView.as_view(), name="api-feed"),
]
