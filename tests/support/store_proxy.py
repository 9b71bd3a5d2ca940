"""A plain HTTP forwarder between a client process and the real local S3 server, for tests
that stop a client at its Nth storage write.

    with StoreProxy(local_stack.s3_endpoint) as proxy:
        proxy.on_kill = lambda: os.killpg(proc.pid, signal.SIGKILL)
        proxy.on_write = proxy.act_at(3, "kill-before")
        ... run the client with endpoint proxy.endpoint ...

It is an HTTP forwarder, not a boto3 hook, so it sees every client alike (boto3, pyarrow's
S3FileSystem, delta-rs / object_store). Requests are forwarded byte for byte: method, path
and query string as received, every header unchanged and in order -- including `Host`,
which the client signed with SigV4 and which therefore must not be rewritten -- and the
body (by Content-Length, or the raw `Transfer-Encoding: chunked` stream, trailers and all).
`Expect: 100-continue` is answered by http.server itself (100 Continue before the body is
read); upstream gets the header and the body straight away, and http.client skips the
upstream's own interim 100.

Writes are PUT, POST and DELETE requests; each gets a sequence number 1, 2, 3, ... when its
body has been received, is recorded in `.writes` as `(n, method, path_and_query)`, and is
then handled as `.on_write(n, method, path)` says:

    None / "forward"  forward it and answer the client
    "kill-before"     call `.on_kill()`; do not forward; close the client's connection
    "kill-after"      forward it (it lands), call `.on_kill()`, close the connection unanswered
    "hold"            call `.on_hold()`, block until `.release()`, then forward and answer
                      (the write lands late)

Reads (GET, HEAD, ...) are never counted. Hooks run on the request's own thread.
"""

from __future__ import annotations

import http.client
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional
from urllib.parse import urlsplit

WRITE_METHODS = frozenset({"PUT", "POST", "DELETE"})
ACTIONS = frozenset({"forward", "kill-before", "kill-after", "hold"})

# Upstream response headers that describe the proxy's own hop to the client, not the message.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "proxy-connection"})

WriteHook = Callable[[int, str, str], Optional[str]]


class _ClientGone(Exception):
    """The client closed its connection (or was killed) before its request was read."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: "StoreProxy"

    def handle_error(self, request, client_address) -> None:  # no tracebacks on stderr
        import sys

        self.proxy.errors.append(repr(sys.exc_info()[1]))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive with the client; 100-continue handled by http.server
    timeout = 120  # idle keep-alive connections are dropped after this
    server: _Server

    def log_message(self, format: str, *args) -> None:  # no per-request lines on stderr
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate sends: without this, Nagle's algorithm and
        # the client's delayed ACK stall every answer by ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.proxy._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.proxy._track(self.connection, add=False)

    def handle(self) -> None:
        try:
            super().handle()
        except (_ClientGone, ConnectionError, TimeoutError):
            pass  # a killed or disconnected client (BrokenPipe, ConnectionReset, ...): quietly done
        except Exception as exc:  # e.g. a failing hook: kept for the test to look at, not printed
            where = f"{getattr(self, 'command', '?')} {getattr(self, 'path', '?')}"
            self.server.proxy.errors.append(f"{where}: {exc!r}")
        self.close_connection = True

    # Every method goes through the same forwarder.
    def __getattr__(self, name: str):
        if name.startswith("do_"):
            return self._proxy_request
        raise AttributeError(name)

    def _read_body(self) -> bytes:
        """The request body exactly as sent (the raw stream if it is chunked)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_raw_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            raise _ClientGone()
        return body

    def _read_raw_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise _ClientGone()
            parts.append(line)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                break
            data = self.rfile.read(size + 2)  # chunk data + CRLF
            if len(data) != size + 2:
                raise _ClientGone()
            parts.append(data)
        while True:  # trailer fields, up to the empty line
            line = self.rfile.readline(65537)
            if not line:
                raise _ClientGone()
            parts.append(line)
            if line in (b"\r\n", b"\n"):
                break
        return b"".join(parts)

    def _proxy_request(self) -> None:
        proxy = self.server.proxy
        method, path = self.command, self.path
        body = self._read_body()
        action = "forward"
        if method in WRITE_METHODS:
            n = proxy._count(method, path)
            hook = proxy.on_write
            action = (hook(n, method, path) if hook is not None else None) or "forward"
            if action not in ACTIONS:
                raise ValueError(f"on_write returned {action!r}; expected one of {sorted(ACTIONS)} or None")
        if action == "kill-before":
            proxy._call(proxy.on_kill)
            self.close_connection = True
            return
        if action == "hold":
            proxy._call(proxy.on_hold)
            proxy._hold_started()
            proxy._gate.wait()
            if proxy._closed:  # the proxy closed while holding: drop the write, never land it late
                self.close_connection = True
                return
        response = self._forward(method, path, body)
        if response is None:
            self._answer(502, "Bad Gateway", [("Content-Type", "text/plain")], b"store proxy: upstream unreachable")
            return
        status, reason, headers, payload = response
        proxy._log(method, path, status)
        if action == "kill-after":
            proxy._call(proxy.on_kill)
            self.close_connection = True
            return
        self._answer(status, reason, headers, payload)

    def _forward(self, method: str, path: str, body: bytes):
        proxy = self.server.proxy
        conn = proxy._connection()
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():  # all of them, duplicates and order kept
                conn.putheader(name, value)
            sent: Optional[OSError] = None
            try:
                conn.endheaders(body or None)
            except OSError as exc:
                sent = exc  # upstream may have answered early (e.g. an error) and closed: read that
                if conn.sock is None:  # not even connected
                    proxy.errors.append(f"upstream {method} {path}: {exc!r}")
                    return None
            try:
                resp = conn.getresponse()
                payload = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                proxy.errors.append(f"upstream {method} {path}: {sent or exc!r}")
                return None
            return resp.status, resp.reason, resp.getheaders(), payload
        finally:
            conn.close()

    def _answer(self, status: int, reason: str, headers, payload: bytes) -> None:
        self.send_response_only(status, reason)  # not send_response: no second Server/Date header
        no_body = self.command == "HEAD" or status < 200 or status in (204, 304)
        for name, value in headers:
            lower = name.lower()
            if lower in _HOP_BY_HOP:
                continue
            if lower == "content-length" and not no_body:
                continue  # set below from the body actually read (the upstream's may have been chunked)
            self.send_header(name, value)
        if not no_body:
            self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not no_body and payload:
            self.wfile.write(payload)
        self.wfile.flush()


class StoreProxy:
    """An HTTP forwarder on 127.0.0.1 in front of `upstream` (e.g. http://127.0.0.1:8333).

    Attributes set by tests: `on_write(n, method, path) -> action | None`, `on_kill()`,
    `on_hold()`. Read by tests: `endpoint`, `writes` (list of (n, method, path)),
    `requests` (list of (method, path, upstream status) of forwarded requests), `errors`.
    """

    def __init__(self, upstream: str, port: int = 0, upstream_timeout: float = 60.0):
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream must be http(s)://host:port, got {upstream!r}")
        self.upstream = upstream
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._timeout = upstream_timeout

        self.on_write: Optional[WriteHook] = None
        self.on_kill: Optional[Callable[[], object]] = None
        self.on_hold: Optional[Callable[[], object]] = None
        self.writes: list[tuple[int, str, str]] = []
        self.requests: list[tuple[str, str, int]] = []
        self.errors: list[str] = []

        self._lock = threading.Lock()
        self._count_n = 0
        self._gate = threading.Event()  # set by release(): held writes go on
        self._held = threading.Event()  # set when a write is being held
        self._closed = False
        self._connections: set[socket.socket] = set()

        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.proxy = self
        self.port: int = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"store-proxy-{self.port}", daemon=True)
        self._thread.start()

    # -- for tests ---------------------------------------------------------------------

    @property
    def host_port(self) -> str:
        """`127.0.0.1:<port>`, e.g. for pyarrow's `endpoint_override`."""
        return f"127.0.0.1:{self.port}"

    @property
    def write_count(self) -> int:
        with self._lock:
            return self._count_n

    @staticmethod
    def act_at(n: int, action: str, after: Optional[str] = None) -> WriteHook:
        """An `on_write` hook: `action` at write `n`, `after` (default: forward) for later writes."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        return lambda k, method, path: action if k == n else (after if k > n else None)

    def reset(self) -> None:
        """Forget the writes seen so far (numbering starts again at 1) and re-arm the hold gate."""
        with self._lock:
            self._count_n = 0
            self.writes.clear()
            self.requests.clear()
            self._held.clear()
            if not self._closed:
                self._gate.clear()

    def wait_held(self, timeout: float = 30.0) -> bool:
        """Wait until a write is being held (after `on_hold` returned)."""
        return self._held.wait(timeout)

    def release(self) -> None:
        """Let every held write (and any later "hold") go on upstream."""
        self._gate.set()

    def close(self) -> None:
        """Stop serving, drop client connections; held writes are dropped, never forwarded."""
        if self._closed:
            return
        self._closed = True
        self._gate.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)

    def __enter__(self) -> "StoreProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StoreProxy({self.endpoint} -> {self.upstream}, writes={self.write_count})"

    # -- for the handler ---------------------------------------------------------------

    def _count(self, method: str, path: str) -> int:
        with self._lock:
            self._count_n += 1
            n = self._count_n
            self.writes.append((n, method, path))
            return n

    def _log(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, status))

    def _hold_started(self) -> None:
        self._held.set()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)

    def _call(self, hook: Optional[Callable[[], object]]) -> None:
        if hook is not None:
            hook()

    def _connection(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
        connection = kind(self._host, self._port, timeout=self._timeout)
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as in setup(), upstream
        return connection
