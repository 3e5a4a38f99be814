"""The object model and the life of a connection: host pools, session hosts, user sessions, gateway
instances, connections; placement, orchestration, the host channel's bus.

Its face, for the apps above it: ``models`` (with the Connection's lifecycle) and ``choices``;
``placement.release_reservation``; ``tasks.orchestrate_connection``; ``gateways`` (the instance registry);
``hostbus`` (reaching a host's agent); ``hostcertificates`` (an agent's identity); ``verdicts`` (waking the
client a verdict is for); ``rdpproperties``; ``broker.api`` for the URL root. ``orchestration`` is its own:
the task runs it.
"""
