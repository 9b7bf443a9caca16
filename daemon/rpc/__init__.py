"""The connection layer: from bytes on a unix socket to a handler's reply and back.

- ``session``: one connection's state and flow rules, without I/O: bytes in, requests
  to start, whether to read, when to close (tested without sockets).
- ``transport``: the asyncio protocol around a session: socket, tasks, timers, writes.
- ``dispatch``: the one request path (``Dispatcher.begin``), then a task's life: role,
  params, lane, deadline, handler, error, log line.
- ``context``: ``DaemonState`` (what handlers share) and ``CallContext`` (one call).
- ``lanes``: ``LaneLimiter``, the concurrency cap and bounded queue of each lane, shared
  fairly between connections and served round-robin.
- ``unfinished``: how long and how much a client's unfinished line may hold.
- ``peer``: who is on the other end (SO_PEERCRED) and whether it hung up.
- ``lingering``: a refused peer gets its error line, then the close.
"""
