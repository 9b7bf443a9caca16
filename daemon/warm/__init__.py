"""The single-use warm pool (issue 20): containers started ahead of a repeated ``run``.

    config.py   ``[daemon.warm]``: static pools, reactive bounds, total and memory budgets
    keys.py     which runs may be served warm, and the key of what is fixed at create time
    pools.py    WarmPools: the containers, claim (one container, one run), refill, expiry
    runner.py   WarmRunner: exec the command in a claimed container, then destroy it

A warm container runs ``/catatonit -P`` (a read-only bind of Podman's static pause
binary), carries the same create body as the cold path and the usual labels plus
``labels.WARM_EXPIRES``, so the reaper removes it past its ttl, when its daemon is
gone, and at shutdown.
"""
