"""Benchmarks: the daemon side by side with the old way, Podman's REST API and a line server.

Run ``python -m bench`` from the repository root (``--quick`` for CI, ``--plot FILE``
for a PNG). Nothing here is imported by the daemon.
"""
