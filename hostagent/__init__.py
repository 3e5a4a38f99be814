"""Session hosts' side of the control plane: registration, the persistent host channel, health, commands;
and the agent program that runs on a host (``hostagent.agent``, pure: it imports only ``wire``).

Its face: ``commands`` (send a command to a host and wait for its answer, the user-session actions),
``models`` (which consumer holds each host's channel), ``routing`` and ``urls`` for the project's roots.
The consumer, health, registration, views and tasks are its own.
"""
