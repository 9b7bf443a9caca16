import sys

from podman_rpc.cli import main

sys.exit(main(["serve", *sys.argv[1:]]))
