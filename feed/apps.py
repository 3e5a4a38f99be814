from django.apps import AppConfig

from broker.admission import install_entitlement_rule
from core import scopes


class FeedConfig(AppConfig):
    name = "feed"

    def ready(self) -> None:
        # Imported here (Django's convention): both modules need the models, which exist once apps are ready.
        from feed import resources, signals  # noqa: PLC0415 - the app registry, not an arrow between apps

        install_entitlement_rule(resources.entitlement_denial)  # asked at every admission (the gateway)
        signals.connect()  # unassignment ends access at once
        _register_scopes()


def _register_scopes() -> None:
    """Where the feed's objects lie among the scopes roles are given at (core/scopes.py, docs/roles.md); a
    connection's application group and workspace are the feed's to say, its host pool the broker's."""
    from broker.models import Connection  # noqa: PLC0415
    from feed.models import ApplicationGroup, Assignment, Desktop, RemoteApp, Workspace  # noqa: PLC0415

    scopes.register_scope("workspace", Workspace)
    scopes.register_scope("applicationgroup", ApplicationGroup)
    scopes.register_object(Workspace, "workspace", workspace="pk")
    scopes.register_object(ApplicationGroup, "applicationgroup", workspace="workspace_id", hostpool="host_pool_id",
                           applicationgroup="pk")
    for model, kind in [(Desktop, "desktop"), (RemoteApp, "remoteapp"), (Assignment, "assignment")]:
        scopes.register_object(model, kind, workspace="application_group__workspace_id",
                               hostpool="application_group__host_pool_id", applicationgroup="application_group_id")
    scopes.register_object(Connection, applicationgroup="application_group_id",
                           workspace="application_group__workspace_id")
