"""Everything that talks to Podman, and nothing that decides what may be asked of it.

- ``pool``: ``PodmanPool``, podman-py clients on worker threads, and Podman's liveness.
- ``http``: the event-loop HTTP client (httptools) for the hot calls, and the one liveness
  probe ``podman_answers``.
- ``libpod``: raw libpod REST calls for podman-py's worker threads (logs, rm, stop, ...).
- ``lifecycle``: a run's container on the event loop: create, start, wait, and the one
  kill-and-remove routine (run, detached deadlines and the reaper share it).
- ``attach``: the hijacked attach/exec stream, demultiplexed on the loop into a capped sink.
- ``errors``: the one table that turns podman-py and transport errors into protocol errors.
- ``labels``: the labels on every container the daemon creates (the reaper trusts only these).
- ``embedded``, ``conf``, ``busybox``: a private Podman service, its containers.conf,
  and the local busybox image, for hosts that have none.
"""
