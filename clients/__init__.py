"""Clients for the podman-rpc daemon. Importing them never imports uvloop or podman-py."""
