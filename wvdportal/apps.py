from django.apps import AppConfig


class WvdPortalConfig(AppConfig):
    name = "wvdportal"
    verbose_name = "Control plane"
