"""The admin portal's pages, one module per concept; urls.py maps them.

Thin views: the numbers come from overview.py, the rules from the models' full_clean (forms.py), host
actions from hostagent.commands; every view is staff only (access.py).

- ``dashboard``: the estate at a glance.
- ``pools``: host pools, their registration tokens, session hosts and drain mode.
- ``workspaces``: workspaces.
- ``groups``: application groups, their desktop, RemoteApps and assignments.
- ``sessions``: user sessions and the commands sent to them through the host's agent.
- ``connections``: connection records, for diagnosis.
- ``responses``: the answers every page shares (a page or its live fragments, the way back).

Pages that show live state render their changing parts from partial templates; the same view answers
``?fragments=1`` with those parts as JSON, which the page's script fetches when the WebSocket says
something changed (live.py).
"""
