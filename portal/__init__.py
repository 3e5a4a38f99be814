"""The admin portal at /portal/: server-rendered pages over every app's data, with live updates."""
