"""The client transports the gateway listener serves, on ``https://<gateway>/remoteDesktopGateway/`` (the
browser's on ``…/remoteDesktopGateway/rdcleanpath``).

The listener (gateway/server.py) reads the first request head and hands the connection to one of them:

| request | module | what | clients |
| --- | --- | --- | --- |
| ``RDG_OUT_DATA`` + WebSocket upgrade | ``rdg_websocket`` | MS-TSGU, a packet per frame | FreeRDP 2/3, mstsc |
| ``RDG_OUT_DATA`` / ``RDG_IN_DATA`` | ``rdg_legacy`` | MS-TSGU on two HTTP connections | FreeRDP 2 ``/gt:http,no-websockets``, FreeRDP 3 ``/gateway:type:http,no-websockets`` |
| ``GET`` + WebSocket upgrade | ``wst`` | raw RDP, a Bearer ticket | FreeRDP 3's ``wst`` (``/gateway:url:wss://…,bearer:<ticket>``), our connector |
| ``GET /remoteDesktopGateway/rdcleanpath`` + WebSocket upgrade | ``rdcleanpath`` | RDCleanPath: TLS to the host run by the gateway, plaintext RDP in binary messages, a web ticket | IronRDP's web client (the portal's browser page) |
| ``GET /hostagent/relay/<id>/`` + ``Upgrade: wvd-agent-link/1`` | ``agentlink`` | the host's end | our agent |

The two RD Gateway transports feed one TSGU session object (``tunnel.RdgTunnel``) through a packet sink;
all of them share the setup steps (ticket, records, orchestration, waiting for the host) in ``setup``.
"""
