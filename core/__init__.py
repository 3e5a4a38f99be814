"""The control plane's credentials and the base every app builds on (app label ``wvdportal``).

Its face is all of it: the CA and certificates (``ca``, ``models``), tickets (``tickets``), API tokens and
their authentication, sign-in (``signin``), the REST API's base (``core.api``), permissions, the database
rules that span tables (``dbrules``), the ``WVD_*`` readers (``environment``) and configuration checks.
"""
