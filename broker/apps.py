from django.apps import AppConfig


class BrokerConfig(AppConfig):
    name = "broker"

    def ready(self) -> None:
        # Here (Django's convention): the models exist once apps are ready.
        from broker.models import Connection, GatewayInstance, HostPool, SessionHost, UserSession  # noqa: PLC0415
        from core import scopes  # noqa: PLC0415

        # Where the broker's objects lie among the scopes roles are given at (core/scopes.py, docs/roles.md).
        scopes.register_scope("hostpool", HostPool)
        scopes.register_object(HostPool, "hostpool", hostpool="pk")
        scopes.register_object(SessionHost, "sessionhost", hostpool="host_pool_id")
        scopes.register_object(UserSession, "usersession", hostpool="session_host__host_pool_id")
        scopes.register_object(Connection, "connection", hostpool="host_pool_id")
        scopes.register_object(GatewayInstance, "gatewayinstance")  # the scope 'all' only
