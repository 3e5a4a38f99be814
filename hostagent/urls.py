"""Host agent HTTP endpoints, mounted at /api/v1/hostagent/."""
from __future__ import annotations

urlpatterns: list = []
