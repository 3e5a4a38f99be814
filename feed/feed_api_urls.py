"""The JSON feed, mounted at /api/v1/feed/."""
urlpatterns: list = []
