"""The authenticated HTTP API (``/api/v1/``) and the remote command line's
client of it; see docs/api.md."""
