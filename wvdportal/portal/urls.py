"""The admin portal's URLs, mounted at /portal/ by wvdportal/urls.py. Every view is staff only."""
from __future__ import annotations

from django.urls import path

from wvdportal.portal import views

app_name = "portal"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("pools/", views.pool_list, name="pools"),
    path("pools/new/", views.pool_create, name="pool-create"),
    path("pools/<int:pk>/", views.pool_detail, name="pool-detail"),
    path("pools/<int:pk>/edit/", views.pool_edit, name="pool-edit"),
    path("pools/<int:pk>/token/", views.pool_token, name="pool-token"),
    path("pools/<int:pk>/token/revoke/", views.pool_token_revoke, name="pool-token-revoke"),
    path("hosts/<int:pk>/", views.host_detail, name="host-detail"),
    path("hosts/<int:pk>/drain/", views.host_drain, name="host-drain"),
    path("workspaces/", views.workspace_list, name="workspaces"),
    path("workspaces/new/", views.workspace_create, name="workspace-create"),
    path("workspaces/<int:pk>/edit/", views.workspace_edit, name="workspace-edit"),
    path("groups/", views.group_list, name="groups"),
    path("groups/new/", views.group_create, name="group-create"),
    path("groups/<int:pk>/", views.group_detail, name="group-detail"),
    path("groups/<int:pk>/edit/", views.group_edit, name="group-edit"),
    path("groups/<int:pk>/desktop/", views.desktop_edit, name="desktop-edit"),
    path("groups/<int:pk>/apps/new/", views.app_create, name="app-create"),
    path("groups/<int:pk>/assign/", views.assignment_create, name="assignment-create"),
    path("apps/<int:pk>/edit/", views.app_edit, name="app-edit"),
    path("assignments/<int:pk>/remove/", views.assignment_delete, name="assignment-delete"),
    path("principals/", views.principal_search, name="principal-search"),
    path("sessions/", views.session_list, name="sessions"),
    path("sessions/<int:pk>/logoff/", views.session_logoff, name="session-logoff"),
    path("sessions/<int:pk>/disconnect/", views.session_disconnect, name="session-disconnect"),
    path("sessions/<int:pk>/message/", views.session_message, name="session-message"),
    path("connections/", views.connection_list, name="connections"),
    path("connections/<uuid:activity_id>/", views.connection_detail, name="connection-detail"),
]
