"""The admin portal's URLs, under /portal/ (the root mounts them at ""). Every view is for portal users (a role, or a superuser)."""
from __future__ import annotations

from django.urls import path

from portal.views import connections, dashboard, groups, pools, roles, sessions, workspaces
from portal.views import audit, connections, dashboard, groups, pools, sessions, workspaces

app_name = "portal"

urlpatterns = [
    path("portal/", dashboard.dashboard, name="dashboard"),
    path("portal/pools/", pools.pool_list, name="pools"),
    path("portal/pools/new/", pools.PoolCreateView.as_view(), name="pool-create"),
    path("portal/pools/<int:pk>/", pools.pool_detail, name="pool-detail"),
    path("portal/pools/<int:pk>/edit/", pools.PoolEditView.as_view(), name="pool-edit"),
    path("portal/pools/<int:pk>/token/", pools.pool_token, name="pool-token"),
    path("portal/pools/<int:pk>/token/revoke/", pools.pool_token_revoke, name="pool-token-revoke"),
    path("portal/hosts/<int:pk>/", pools.host_detail, name="host-detail"),
    path("portal/hosts/<int:pk>/drain/", pools.host_drain, name="host-drain"),
    path("portal/hosts/<int:pk>/replacement/", pools.host_replacement, name="host-replacement"),
    path("portal/workspaces/", workspaces.workspace_list, name="workspaces"),
    path("portal/workspaces/new/", workspaces.WorkspaceCreateView.as_view(), name="workspace-create"),
    path("portal/workspaces/<int:pk>/edit/", workspaces.WorkspaceEditView.as_view(), name="workspace-edit"),
    path("portal/groups/", groups.group_list, name="groups"),
    path("portal/groups/new/", groups.GroupCreateView.as_view(), name="group-create"),
    path("portal/groups/<int:pk>/", groups.group_detail, name="group-detail"),
    path("portal/groups/<int:pk>/edit/", groups.GroupEditView.as_view(), name="group-edit"),
    path("portal/groups/<int:pk>/desktop/", groups.DesktopEditView.as_view(), name="desktop-edit"),
    path("portal/groups/<int:pk>/apps/new/", groups.AppCreateView.as_view(), name="app-create"),
    path("portal/groups/<int:pk>/assign/", groups.AssignmentCreateView.as_view(), name="assignment-create"),
    path("portal/apps/<int:pk>/edit/", groups.AppEditView.as_view(), name="app-edit"),
    path("portal/assignments/<int:pk>/remove/", groups.assignment_delete, name="assignment-delete"),
    path("portal/principals/", groups.principal_search, name="principal-search"),
    path("portal/sessions/", sessions.session_list, name="sessions"),
    path("portal/sessions/<int:pk>/logoff/", sessions.session_logoff, name="session-logoff"),
    path("portal/sessions/<int:pk>/disconnect/", sessions.session_disconnect, name="session-disconnect"),
    path("portal/sessions/<int:pk>/message/", sessions.session_message, name="session-message"),
    path("portal/connections/", connections.connection_list, name="connections"),
    path("portal/connections/<uuid:activity_id>/", connections.connection_detail, name="connection-detail"),
    path("portal/roles/", roles.role_list, name="roles"),
    path("portal/roles/<int:pk>/remove/", roles.role_remove, name="role-remove"),
    path("portal/audit/", audit.audit_list, name="audit"),
]
