"""The control plane's credentials and the base every app builds on (app label ``wvdportal``).

Its face is all of it: the CA and certificates (``ca``, ``models``), tickets (``tickets``), API tokens and
their authentication, sign-in (``signin``) and the throttle every sign-in surface shares (``throttle``), the
client's address behind trusted proxies (``clientaddress``), the REST API's base (``core.api``),
permissions, the database rules that span tables (``dbrules``), the ``WVD_*`` readers (``environment``)
and configuration checks.
"""
