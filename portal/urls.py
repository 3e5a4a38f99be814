"""The admin portal's URLs, under /portal/ (the root mounts them at ""). Every view is staff only."""
from __future__ import annotations

from django.urls import path

from portal import views

app_name = "portal"

urlpatterns = [
    path("portal/", views.dashboard, name="dashboard"),
    path("portal/pools/", views.pool_list, name="pools"),
    path("portal/pools/new/", views.pool_create, name="pool-create"),
    path("portal/pools/<int:pk>/", views.pool_detail, name="pool-detail"),
    path("portal/pools/<int:pk>/edit/", views.pool_edit, name="pool-edit"),
    path("portal/pools/<int:pk>/token/", views.pool_token, name="pool-token"),
    path("portal/pools/<int:pk>/token/revoke/", views.pool_token_revoke, name="pool-token-revoke"),
    path("portal/hosts/<int:pk>/", views.host_detail, name="host-detail"),
    path("portal/hosts/<int:pk>/drain/", views.host_drain, name="host-drain"),
    path("portal/workspaces/", views.workspace_list, name="workspaces"),
    path("portal/workspaces/new/", views.workspace_create, name="workspace-create"),
    path("portal/workspaces/<int:pk>/edit/", views.workspace_edit, name="workspace-edit"),
    path("portal/groups/", views.group_list, name="groups"),
    path("portal/groups/new/", views.group_create, name="group-create"),
    path("portal/groups/<int:pk>/", views.group_detail, name="group-detail"),
    path("portal/groups/<int:pk>/edit/", views.group_edit, name="group-edit"),
    path("portal/groups/<int:pk>/desktop/", views.desktop_edit, name="desktop-edit"),
    path("portal/groups/<int:pk>/apps/new/", views.app_create, name="app-create"),
    path("portal/groups/<int:pk>/assign/", views.assignment_create, name="assignment-create"),
    path("portal/apps/<int:pk>/edit/", views.app_edit, name="app-edit"),
    path("portal/assignments/<int:pk>/remove/", views.assignment_delete, name="assignment-delete"),
    path("portal/principals/", views.principal_search, name="principal-search"),
    path("portal/sessions/", views.session_list, name="sessions"),
    path("portal/sessions/<int:pk>/logoff/", views.session_logoff, name="session-logoff"),
    path("portal/sessions/<int:pk>/disconnect/", views.session_disconnect, name="session-disconnect"),
    path("portal/sessions/<int:pk>/message/", views.session_message, name="session-message"),
    path("portal/connections/", views.connection_list, name="connections"),
    path("portal/connections/<uuid:activity_id>/", views.connection_detail, name="connection-detail"),
]
