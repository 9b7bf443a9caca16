"""The podman-rpc daemon: a JSON-RPC 2.0 server on a unix socket in front of Podman.

A request travels down this map, and each layer imports only the ones below it::

    main.py, server.py   start, listen, drain, stop (config.py: every setting)
        rpc/             the connection: bytes -> requests -> replies
        handlers/        one module per family of methods, bound to protocol.methods
        warm/            containers started ahead of a repeated run (issue 20)
        guard/           who may call what, and what a container may get of the host
        podman/          every call to Podman, and the translation of its errors
        ops/             what runs beside requests: reaper, idle exit, systemd, logs

``protocol`` (the wire format and the method declarations) sits under all of them
and imports none; the clients (``podman_rpc``) never import this package.
"""
