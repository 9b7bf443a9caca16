"""The single-use warm pool (issue 20): containers started ahead of a repeated ``run``.

    config.py   ``[daemon.warm]``: static pools, reactive bounds, total and memory budgets
    keys.py     which runs may be served warm, and the key of what is fixed at create time
    pools.py    WarmPools: the containers, claim (one container, one run), refill, expiry
    launcher.py the launcher a warm container idles in, and the one line a claim sends it
    runner.py   WarmRunner: attach to a claimed container, send the line, then destroy it

A warm container runs a shell of the host's static busybox (bound read-only)
blocked on its stdin (``launcher``); a claim writes one line, and the command
replaces the shell. It carries the same create body as the cold path and the
usual labels plus ``labels.WARM_EXPIRES``, so the reaper removes it past its ttl,
when its daemon is gone, and at shutdown.
"""
