"""Client sign-in endpoints, mounted at /api/v1/auth/."""
urlpatterns: list = []
