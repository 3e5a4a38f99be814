from django.apps import AppConfig

from broker.admission import install_entitlement_rule


class FeedConfig(AppConfig):
    name = "feed"

    def ready(self) -> None:
        # Imported here (Django's convention): both modules need the models, which exist once apps are ready.
        from feed import resources, signals  # noqa: PLC0415 - the app registry, not an arrow between apps

        install_entitlement_rule(resources.entitlement_denial)  # asked at every admission (the gateway)
        signals.connect()  # unassignment ends access at once
