/// Client for the podman-rpc daemon: JSON-RPC 2.0, one JSON value per line,
/// over one persistent unix socket.
///
/// This file follows `clients/aio.py` (the Python AsyncClient) part by part:
/// encoding, routing replies by id, `$/progress`, cancellation with
/// `$/cancelRequest`, and reconnecting on the next call after the daemon
/// restarts. The bytes it writes are the ones pinned in
/// `protocol/transcripts/*.jsonl`.
///
/// NOT COMPILED IN CI: no Dart SDK is available where this project is tested.
library podman_rpc;

import 'dart:async';
import 'dart:convert';
import 'dart:io';

const String progressMethod = r'$/progress';
const String cancelMethod = r'$/cancelRequest';

/// Where the daemon listens: $PODMAN_RPC_SOCKET, else the root default
/// (`podman-rpc serve` as a user uses $XDG_RUNTIME_DIR/podman-rpc/podman-rpc.sock).
String defaultSocket() {
  final env = Platform.environment;
  final explicit = env['PODMAN_RPC_SOCKET'];
  if (explicit != null && explicit.isNotEmpty) return explicit;
  return '/run/podman-rpc/podman-rpc.sock';
}

// --- errors: one class per code, as protocol/errors.py ---------------------------

/// A JSON-RPC error from the daemon; `data['kind']` is the stable name.
class RpcError implements Exception {
  final int code;
  final String message;
  final Map<String, dynamic> data;

  RpcError(this.code, this.message, this.data);

  String get kind => (data['kind'] as String?) ?? 'RpcError';

  @override
  String toString() => '$runtimeType($code, $message)';

  /// Rebuild the typed error from a wire `error` object.
  factory RpcError.fromWire(Map<String, dynamic> error) {
    final code = (error['code'] as num?)?.toInt() ?? -32603;
    final message = (error['message'] ?? '').toString();
    final raw = error['data'];
    final data = raw is Map<String, dynamic> ? raw : <String, dynamic>{'value': raw};
    switch (code) {
      case -32700: return ParseError(code, message, data);
      case -32600: return InvalidRequest(code, message, data);
      case -32601: return MethodNotFound(code, message, data);
      case -32602: return InvalidParams(code, message, data);
      case -32603: return InternalError(code, message, data);
      case -32000: return Overloaded(code, message, data);
      case -32001: return RpcTimeout(code, message, data);
      case -32002: return ShuttingDown(code, message, data);
      case -32003: return PolicyDenied(code, message, data);
      case -32010: return PodmanUnavailable(code, message, data);
      case -32011: return NotFound(code, message, data);
      case -32012: return Conflict(code, message, data);
      case -32013: return ContainerFailed(code, message, data);
      case -32014: return PodmanError(code, message, data);
      case -32800: return RequestCancelled(code, message, data);
      default: return RpcError(code, message, data);
    }
  }
}

class ParseError extends RpcError { ParseError(super.code, super.message, super.data); }
class InvalidRequest extends RpcError { InvalidRequest(super.code, super.message, super.data); }
class MethodNotFound extends RpcError { MethodNotFound(super.code, super.message, super.data); }
/// `data['field']` names the param, `data['reason']` says why.
class InvalidParams extends RpcError { InvalidParams(super.code, super.message, super.data); }
class InternalError extends RpcError { InternalError(super.code, super.message, super.data); }
/// `data['retry_after_ms']` says when to try again.
class Overloaded extends RpcError { Overloaded(super.code, super.message, super.data); }
/// The daemon's deadline passed (-32001). Distinct from dart:async's TimeoutException,
/// which is the client-side per-call timeout.
class RpcTimeout extends RpcError { RpcTimeout(super.code, super.message, super.data); }
class ShuttingDown extends RpcError { ShuttingDown(super.code, super.message, super.data); }
/// `data['rule']` names the policy rule.
class PolicyDenied extends RpcError { PolicyDenied(super.code, super.message, super.data); }
class PodmanUnavailable extends RpcError { PodmanUnavailable(super.code, super.message, super.data); }
/// `kind` is ContainerNotFound, ImageNotFound or NotFound.
class NotFound extends RpcError { NotFound(super.code, super.message, super.data); }
class Conflict extends RpcError { Conflict(super.code, super.message, super.data); }
/// `data` holds container_id, exit_code, stdout, stderr.
class ContainerFailed extends RpcError { ContainerFailed(super.code, super.message, super.data); }
/// `data['status']` is Podman's HTTP status.
class PodmanError extends RpcError { PodmanError(super.code, super.message, super.data); }
class RequestCancelled extends RpcError { RequestCancelled(super.code, super.message, super.data); }

/// The connection closed before the reply came; the next call reconnects.
class ConnectionLost implements Exception {
  final String reason;
  ConnectionLost(this.reason);
  @override
  String toString() => 'ConnectionLost($reason)';
}

/// One `$/progress` notification: a line of `stdout`, `stderr` or `build` output.
class Progress {
  final Object? id;
  final String stream;
  final Object? line;
  Progress(this.id, this.stream, this.line);
  @override
  String toString() => 'Progress($id, $stream, $line)';
}

// --- encoding (same bytes as clients/_core.py) -------------------------------------

List<int> _encodeRequest(int id, String method, Map<String, dynamic>? params) {
  final message = <String, dynamic>{'jsonrpc': '2.0', 'id': id, 'method': method};
  if (params != null && params.isNotEmpty) message['params'] = params;
  return utf8.encode('${jsonEncode(message)}\n');
}

List<int> _encodeCancel(int id) => utf8.encode(
    '${jsonEncode({'jsonrpc': '2.0', 'method': cancelMethod, 'params': {'id': id}})}\n');

dynamic _unwrap(Map<String, dynamic> reply) {
  final error = reply['error'];
  if (error != null) {
    throw RpcError.fromWire(
        error is Map<String, dynamic> ? error : <String, dynamic>{'message': '$error'});
  }
  return reply['result'];
}

// --- one live connection: the Router and _Session of the Python client -------------

class _Waiter {
  final Completer<Map<String, dynamic>> completer;
  final void Function(Progress)? onProgress;
  _Waiter(this.completer, this.onProgress);
}

class _Session {
  final Socket socket;
  final Map<Object?, _Waiter> waiters = {};
  final void Function(Progress) broadcast;
  Map<String, dynamic>? connectionError; // an id-less error explaining a close
  bool alive = true;
  late final StreamSubscription<String> _lines;

  _Session(this.socket, this.broadcast) {
    _lines = socket
        .cast<List<int>>()
        .transform(utf8.decoder)
        .transform(const LineSplitter())
        .listen(_onLine,
            onError: (Object e) => _close('connection error: $e'),
            onDone: () => _close('the daemon closed the connection'),
            cancelOnError: true);
  }

  void _onLine(String line) {
    if (line.trim().isEmpty) return;
    Object? message;
    try {
      message = jsonDecode(line);
    } on FormatException {
      return; // not ours to fix; its request fails when the connection closes
    }
    if (message is List) {
      for (final item in message) {
        if (item is Map<String, dynamic>) _route(item);
      }
    } else if (message is Map<String, dynamic>) {
      _route(message);
    }
  }

  void _route(Map<String, dynamic> message) {
    if (message['method'] == progressMethod) {
      final params = (message['params'] as Map<String, dynamic>?) ?? const {};
      final progress = Progress(params['id'], '${params['stream'] ?? ''}', params['line']);
      waiters[params['id']]?.onProgress?.call(progress);
      broadcast(progress);
      return;
    }
    if (!message.containsKey('id') || message.containsKey('method')) return;
    final id = message['id'];
    final waiter = id == null ? null : waiters.remove(id);
    if (waiter != null) {
      if (!waiter.completer.isCompleted) waiter.completer.complete(message);
    } else if (id == null && message['error'] is Map<String, dynamic>) {
      connectionError = message['error'] as Map<String, dynamic>;
    }
  }

  Object lost(String reason) => connectionError != null
      ? RpcError.fromWire(connectionError!)
      : ConnectionLost(reason);

  void _close(String reason) {
    if (!alive) return;
    alive = false;
    final pending = Map.of(waiters);
    waiters.clear();
    for (final waiter in pending.values) {
      if (!waiter.completer.isCompleted) waiter.completer.completeError(lost(reason));
    }
    socket.destroy();
  }

  void send(List<int> data, Map<Object?, _Waiter> newWaiters) {
    if (!alive) throw lost('the connection is closed');
    waiters.addAll(newWaiters);
    socket.add(data); // one add per message: lines never interleave
  }

  void sendNow(List<int> data) {
    if (alive) socket.add(data);
  }

  Future<void> close() async {
    await _lines.cancel();
    _close('closed by the client');
  }
}

// --- the client ----------------------------------------------------------------------

/// A call in flight: its progress as a Stream, its result as a Future, and cancel().
class RpcCall {
  final int id;
  final Stream<Progress> progress;
  final Future<dynamic> result;
  final void Function() _cancel;
  RpcCall(this.id, this.progress, this.result, this._cancel);

  /// Sends `$/cancelRequest`; `result` then fails with RequestCancelled.
  void cancel() => _cancel();
}

/// One persistent connection, any number of calls in flight on it, matched by id.
class PodmanRpcClient {
  final String path;

  /// Default client-side wait per call; past it the call is cancelled with
  /// `$/cancelRequest` and fails with dart:async's TimeoutException.
  final Duration? timeout;

  _Session? _session;
  Future<_Session>? _connecting;
  int _nextId = 0;
  final StreamController<Progress> _progress = StreamController<Progress>.broadcast();

  PodmanRpcClient({String? path, this.timeout}) : path = path ?? defaultSocket();

  /// Every `$/progress` notification on this client, whichever call it belongs to.
  Stream<Progress> get progress => _progress.stream;

  bool get connected => _session?.alive ?? false;

  Future<_Session> _live() {
    final session = _session;
    if (session != null && session.alive) return Future.value(session);
    return _connecting ??= () async {
      try {
        final address = InternetAddress(path, type: InternetAddressType.unix);
        final socket = await Socket.connect(address, 0);
        return _session = _Session(socket, _progress.add);
      } finally {
        _connecting = null;
      }
    }();
  }

  /// Send, reconnecting once if the daemon went away (it restarted, or idled out).
  Future<_Session> _send(List<int> data, Map<Object?, _Waiter> waiters) async {
    var session = await _live();
    try {
      session.send(data, waiters);
    } on Object catch (e) {
      if (e is! ConnectionLost && e is! SocketException && e is! StateError) rethrow;
      session = await _live();
      session.send(data, waiters);
    }
    return session;
  }

  /// Start a call. With [progress] true (for run, build, pull) the daemon sends
  /// `$/progress` lines, delivered on [RpcCall.progress] before [RpcCall.result].
  Future<RpcCall> start(String method,
      {Map<String, dynamic>? params, bool progress = false, Duration? timeout}) async {
    final id = ++_nextId;
    final lines = StreamController<Progress>();
    final completer = Completer<Map<String, dynamic>>();
    final sendParams = progress ? {...?params, 'progress': true} : params;
    final session = await _send(_encodeRequest(id, method, sendParams),
        {id: _Waiter(completer, progress ? lines.add : null)});

    void cancel() {
      if (completer.isCompleted) return;
      session.waiters.remove(id);
      session.sendNow(_encodeCancel(id));
      completer.completeError(
          RequestCancelled(-32800, 'Request cancelled', {'kind': 'RequestCancelled'}));
    }

    var reply = completer.future;
    final wait = timeout ?? this.timeout;
    if (wait != null) {
      reply = reply.timeout(wait, onTimeout: () {
        cancel();
        throw TimeoutException('$method: no reply within $wait; cancelled', wait);
      });
    }
    // Not awaited: close() of a stream nobody listens to would never complete.
    final result = reply.then(_unwrap).whenComplete(() {
      lines.close();
    });
    return RpcCall(id, lines.stream, result, cancel);
  }

  /// Send one request and wait for its result; errors throw [RpcError] subclasses.
  Future<dynamic> call(String method,
      {Map<String, dynamic>? params,
      void Function(Progress)? onProgress,
      Duration? timeout}) async {
    final running = await start(method,
        params: params, progress: onProgress != null, timeout: timeout);
    if (onProgress != null) running.progress.listen(onProgress);
    return running.result;
  }

  /// A notification: the daemon runs it and sends no reply.
  Future<void> notify(String method, [Map<String, dynamic>? params]) async {
    final message = <String, dynamic>{'jsonrpc': '2.0', 'method': method};
    if (params != null && params.isNotEmpty) message['params'] = params;
    await _send(utf8.encode('${jsonEncode(message)}\n'), {});
  }

  /// Several requests as one JSON-RPC batch: each result, or the RpcError, in order.
  Future<List<Object?>> batch(List<MapEntry<String, Map<String, dynamic>?>> calls) async {
    if (calls.isEmpty) return [];
    final ids = <int>[];
    final waiters = <Object?, _Waiter>{};
    final parts = <String>[];
    for (final entry in calls) {
      final id = ++_nextId;
      ids.add(id);
      waiters[id] = _Waiter(Completer<Map<String, dynamic>>(), null);
      parts.add(utf8.decode(_encodeRequest(id, entry.key, entry.value)).trimRight());
    }
    await _send(utf8.encode('[${parts.join(',')}]\n'), waiters);
    final out = <Object?>[];
    for (final id in ids) {
      try {
        out.add(_unwrap(await waiters[id]!.completer.future));
      } on RpcError catch (e) {
        out.add(e);
      }
    }
    return out;
  }

  Future<void> close() async {
    final session = _session;
    _session = null;
    await session?.close();
  }

  // The most used methods, for convenience; `podman-rpc methods` lists them all,
  // and every one is reachable with call().
  Future<String> ping() async => await call('ping') as String;
  Future<String> version() async => await call('version') as String;
  Future<Map<String, dynamic>> status() async =>
      await call('status') as Map<String, dynamic>;

  /// `run`: params as in `podman-rpc describe run` (image, command, timeout, ...).
  Future<Map<String, dynamic>> run(Map<String, dynamic> params,
          {void Function(Progress)? onProgress, Duration? timeout}) async =>
      await call('run', params: params, onProgress: onProgress, timeout: timeout)
          as Map<String, dynamic>;
}
