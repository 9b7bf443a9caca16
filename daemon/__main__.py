"""``python -m podman_rpc.daemon``: the daemon's own entry point (``podman-rpcd``)."""

import sys

try:
    from podman_rpc.daemon.main import main
except ModuleNotFoundError as exc:  # the clients install without the daemon's packages
    print(f"podman-rpc serve: {exc.name} is missing; the daemon needs the `daemon` extra:"
          " pip install 'podman-rpc[daemon]'", file=sys.stderr)
    sys.exit(2)

sys.exit(main())
