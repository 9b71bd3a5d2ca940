"""tests/support/store_proxy.py, the write-counting HTTP forwarder for crash and split-brain tests:
byte-exact forwarding against a recording fake upstream, then boto3, pyarrow and delta-rs
through it to the real SeaweedFS of the session's stack, and a client process SIGKILLed
before / after, or SIGSTOPped during, its 2nd write."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support.store_proxy import StoreProxy


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list = []

    def log_message(self, *args) -> None:
        pass

    def _any(self) -> None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
            raw = b""
            while True:
                line = self.rfile.readline()
                raw += line
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    break
                raw += self.rfile.read(size + 2)
            while True:
                line = self.rfile.readline()
                raw += line
                if line == b"\r\n":
                    break
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.command, self.path, self.headers.items(), raw))
        if self.path.startswith("/chunked-answer"):
            self.send_response_only(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Upstream", "yes")
            self.end_headers()
            self.wfile.write(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            return
        answer = b"" if self.command == "HEAD" else json.dumps({"n": len(self.seen)}).encode()
        self.send_response_only(201 if self.command == "PUT" else 200)
        self.send_header("Content-Length", "7" if self.command == "HEAD" else str(len(answer)))
        self.send_header("ETag", '"abc"')
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _any


@pytest.fixture()
def fake_upstream():
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.seen
    server.shutdown()
    server.server_close()


def test_forwards_requests_byte_for_byte(fake_upstream):
    upstream, seen = fake_upstream
    with StoreProxy(upstream) as proxy:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        # A signed Host that is not the proxy's own; headers in an odd order, one repeated.
        conn.putrequest("PUT", "/b/k%20x?partNumber=1&uploadId=u%2Fv", skip_host=True, skip_accept_encoding=True)
        for name, value in [("Host", "store.example:9000"), ("X-Amz-Date", "20250101T000000Z"),
                            ("Content-Length", "5"), ("X-Amz-Meta-A", "1"), ("X-Amz-Meta-A", "2"),
                            ("Expect", "100-continue")]:
            conn.putheader(name, value)
        conn.endheaders(b"hello")
        resp = conn.getresponse()
        assert resp.status == 201 and resp.read() == b'{"n": 1}' and resp.getheader("ETag") == '"abc"'
        # Same connection (keep-alive): a chunked upload with a chunk extension and a trailer.
        raw = b"4;chunk-signature=ab\r\nabcd\r\n3\r\nefg\r\n0\r\nx-amz-checksum-crc32: AAAA\r\n\r\n"
        conn.putrequest("POST", "/b/k?uploads", skip_accept_encoding=True)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader("Content-Encoding", "aws-chunked")
        conn.endheaders()
        conn.send(raw)
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b'{"n": 2}'
        conn.request("HEAD", "/b/k")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Length") == "7" and resp.read() == b""
        conn.request("GET", "/chunked-answer")  # a chunked answer reaches the client whole
        resp = conn.getresponse()
        assert resp.read() == b"hello world" and resp.getheader("X-Upstream") == "yes"
        conn.request("DELETE", "/b/k")
        assert conn.getresponse().read() == b'{"n": 5}'
        conn.close()

        assert proxy.writes == [(1, "PUT", "/b/k%20x?partNumber=1&uploadId=u%2Fv"), (2, "POST", "/b/k?uploads"),
                                (3, "DELETE", "/b/k")]
        assert proxy.errors == []
    method, path, headers, body = seen[0]
    assert (method, path, body) == ("PUT", "/b/k%20x?partNumber=1&uploadId=u%2Fv", b"hello")
    assert headers == [("Host", "store.example:9000"), ("X-Amz-Date", "20250101T000000Z"),
                       ("Content-Length", "5"), ("X-Amz-Meta-A", "1"), ("X-Amz-Meta-A", "2"),
                       ("Expect", "100-continue")]
    method, path, headers, body = seen[1]
    assert (method, path, body) == ("POST", "/b/k?uploads", raw)
    assert ("Host", f"127.0.0.1:{proxy.port}") in headers and ("Transfer-Encoding", "chunked") in headers
    assert [s[0] for s in seen] == ["PUT", "POST", "HEAD", "GET", "DELETE"]


def test_kill_hooks_and_release_against_fake_upstream(fake_upstream):
    upstream, seen = fake_upstream
    with StoreProxy(upstream) as proxy:
        killed, held = [], []
        proxy.on_kill = lambda: killed.append(proxy.write_count)
        proxy.on_hold = lambda: held.append(proxy.write_count)
        actions = {1: "kill-before", 2: "kill-after", 3: "hold"}
        proxy.on_write = lambda n, method, path: actions.get(n)

        def put(key: str) -> http.client.HTTPResponse:
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
            conn.request("PUT", key, body=b"x")
            return conn.getresponse()

        with pytest.raises(http.client.RemoteDisconnected):
            put("/b/1")  # never forwarded, never answered
        with pytest.raises(http.client.RemoteDisconnected):
            put("/b/2")  # forwarded, then not answered
        assert killed == [1, 2] and [s[1] for s in seen] == ["/b/2"]

        answers: list = []
        late = threading.Thread(target=lambda: answers.append(put("/b/3").status))
        late.start()
        assert proxy.wait_held(5) and held == [3]
        time.sleep(0.2)
        assert answers == [] and [s[1] for s in seen] == ["/b/2"]  # held: not landed yet
        proxy.release()
        late.join(10)
        assert answers == [201] and [s[1] for s in seen] == ["/b/2", "/b/3"]
        assert put("/b/4").status == 201
        assert [w[2] for w in proxy.writes] == ["/b/1", "/b/2", "/b/3", "/b/4"]

        proxy.reset()
        assert proxy.writes == [] and proxy.write_count == 0
        proxy.on_write = proxy.act_at(1, "hold")
        def dropped() -> None:
            with pytest.raises(http.client.RemoteDisconnected):
                put("/b/5")
            answers.append("dropped")

        blocked = threading.Thread(target=dropped, daemon=True)
        blocked.start()
        assert proxy.wait_held(5)
    blocked.join(5)  # close() let go of the held write: dropped, not landed
    assert not blocked.is_alive() and answers == [201, "dropped"]
    assert [s[1] for s in seen] == ["/b/2", "/b/3", "/b/4"]


def test_client_killed_mid_body_is_quiet(fake_upstream, capfd):
    upstream, seen = fake_upstream
    with StoreProxy(upstream) as proxy:
        sock = socket.create_connection(("127.0.0.1", proxy.port))
        sock.sendall(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part")
        sock.close()
        sock = socket.create_connection(("127.0.0.1", proxy.port))
        sock.sendall(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # a reset
        time.sleep(0.3)
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        conn.request("GET", "/b/k")
        assert conn.getresponse().status == 200
        assert proxy.writes == [] and proxy.errors == []
    assert [s[0] for s in seen] == ["GET"]
    assert capfd.readouterr().err == ""
