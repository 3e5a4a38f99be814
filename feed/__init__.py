"""What users are given: workspaces, application groups, desktops, RemoteApps, assignments; the feeds,
the signed .rdp files, icons and the user's page.

Its face: ``models``, ``icons`` (the portal checks uploads with it), ``feed.api`` and ``urls`` for the URL
root. Everything else (resources, views, the file and feed formats) is its own.
"""
