from django.apps import AppConfig
from django.db.models.signals import post_migrate, pre_migrate


def _suspend_rules(sender, using="default", **kwargs) -> None:
    from wvdportal.dbrules import suspend_rules

    suspend_rules(using)


def _ensure_rules(sender, using="default", **kwargs) -> None:
    from wvdportal.dbrules import ensure_rules

    ensure_rules(using)


class WvdPortalConfig(AppConfig):
    name = "wvdportal"
    verbose_name = "Control plane"

    def ready(self) -> None:
        # Once per migrate run: the signals fire for every app, these only for ours.
        pre_migrate.connect(_suspend_rules, sender=self, dispatch_uid="wvd-suspend-database-rules")
        post_migrate.connect(_ensure_rules, sender=self, dispatch_uid="wvd-ensure-database-rules")
