"""The gateway instance: ``serve``, the RD Gateway listener and its transports, the agent link, the relay
core; and the connector program (``gateway.connector``, pure: it imports only ``wire``).

It has no face for the other apps: nothing imports it but its own modules (the project runs ``serve``).
"""
