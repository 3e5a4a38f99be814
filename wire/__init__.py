"""The formats every program shares, pure (no Django): the agent and the connector import only this.

Its face is every module: ``base64url``, ``tickets`` (the envelope), ``rdpfile`` (the .rdp grammar),
``errors`` (the connection error codes), ``hostchannel``, ``relaylink`` and ``proof``.
"""
