"""The privilege boundary: what a peer may call, and what its containers may get.

- ``access``: who may connect, each peer's role, and the role each method needs.
- ``policy`` and ``policy_rules``: the run policy, judged on the final libpod create body.
- ``confine``: what every container gets of the host (capabilities, user namespace, mounts).
- ``build_policy``: what a ``build`` may read and reach, and what a ``pull`` may fetch.

Ownership (a peer sees only what it created) is enforced by ``handlers.owned``.
"""
