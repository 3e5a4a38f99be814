"""The admin app with the audited site as its default (core/adminsite.py). A module of its own: INSTALLED_APPS
imports it before any model exists, and the site is imported by name only when the admin first needs it."""
from django.contrib.admin.apps import AdminConfig


class AuditedAdminConfig(AdminConfig):
    default_site = "core.adminsite.AuditedAdminSite"
