"""The client-side connector: RDP clients with no RD Gateway support reach a desktop of the feed through it.

``python -m gateway.connector FILE.rdp`` reads the gateway and the ticket from a .rdp file of our feed,
listens on a local port and tunnels every connection made to it through the gateway's raw WebSocket
transport (gateway/transports/wst.py); ``--launch`` also starts the local client pointed at that port.
See README.md beside this file. Runs outside the server: the standard library, ``websockets`` and
wire/errors.py's pure table of error messages only; no Django.
"""
