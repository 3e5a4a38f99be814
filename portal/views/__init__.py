"""The admin portal's pages, one module per concept; urls.py maps them.

Thin views: the numbers come from overview.py, the rules from the models' full_clean (forms.py), host
actions from hostagent.commands; every view is staff only (access.py).

- ``dashboard``: the estate at a glance.
- ``pools``: host pools, their registration tokens, session hosts and drain mode.
- ``workspaces``: workspaces.
- ``groups``: application groups, their desktop, RemoteApps and assignments.
- ``sessions``: user sessions and the commands sent to them through the host's agent.
- ``connections``: connection records, for diagnosis.
- ``generic``: ``ObjectEditView``, the one create-and-edit view; every create or edit page above is a
  declaration of it (which object, which form, what to say, where to go next).
- ``responses``: the answers every page shares (a page or its live fragments, a form page, the way back,
  the page for an object deleted meanwhile).

Pages that show live state render their changing parts from partial templates; the same view answers
``?fragments=1`` with those parts as JSON, which the page's script fetches when the WebSocket says
something changed (live.py).
"""
