from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models.signals import post_migrate, pre_migrate

from core.dbrules import ensure_rules, suspend_rules


def _suspend_rules(sender, using="default", **kwargs) -> None:
    suspend_rules(using)


def _ensure_rules(sender, using="default", **kwargs) -> None:
    ensure_rules(using)


class CoreConfig(AppConfig):
    """The control plane's credentials (CA and certificates, tickets, API tokens, sign-in) and the base
    every app's REST API builds on.

    The label stays ``wvdportal``: these tables, permissions and admin URLs were created under it when this
    code lived in the project package, and a label is what the database knows an app by.
    """

    name = "core"
    label = "wvdportal"
    verbose_name = "Control plane"

    def ready(self) -> None:
        # Once per migrate run: the signals fire for every app, these only for ours.
        pre_migrate.connect(_suspend_rules, sender=self, dispatch_uid="wvd-suspend-database-rules")
        post_migrate.connect(_ensure_rules, sender=self, dispatch_uid="wvd-ensure-database-rules")
        # Here, not at the top (Django's convention): both modules need models, which exist once apps are
        # ready. What takes a user's access away (sign-out, password, deactivation, groups), and the sign-in
        # throttle's log of failures.
        from core import audit, dbconnections, directory, signals, throttle  # noqa: PLC0415 - the app registry, not an arrow between apps

        signals.connect()
        dbconnections.connect()  # a web request's thread closes its database connections as it ends
        directory.connect()  # tells a directory that could not answer from a wrong password
        user_login_failed.connect(throttle.log_failed_sign_in, dispatch_uid="wvd-log-failed-sign-in")
        from core import scopes  # noqa: PLC0415
        from core.models import AuditEvent, Certificate  # noqa: PLC0415
        scopes.register_object(Certificate, "certificate")  # the scope 'all' only
        scopes.register_object(AuditEvent, "auditevent")  # the scope 'all' only
        user_logged_in.connect(audit.record_staff_sign_in, dispatch_uid="wvd-audit-staff-sign-in")
