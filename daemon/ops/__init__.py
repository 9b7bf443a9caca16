"""What runs beside the requests, on timers and signals.

- ``reaper``: removes the daemon's containers that nobody will clean up.
- ``leftovers``: finds and kills (via /proc) the conmon and container processes Podman forgot.
- ``idle``: exit after ``idle_timeout`` with nothing to do.
- ``systemd`` and ``heartbeat``: socket activation, sd_notify, the watchdog.
- ``heap``: glibc heap settings for a server that answers in bursts.
- ``logs``: structlog setup.
"""
