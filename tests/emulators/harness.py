"""A tiny HTTP server on 127.0.0.1 for platform emulators: routing, a controllable clock, and fault
injection (429 with Retry-After, 500/503, slow responses for client timeouts, dropped connections).

Emulators subclass `Emulator`, register routes with `route`, and read time from `self.clock`.
Faults apply to any emulator, including a reverse proxy in front of a moto server.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Clock:
    """Time the emulator sees; tests move it forward instead of sleeping."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    raw_query: str = ""
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list → JSON; bytes/str → as is
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, bytes | str):
            data = self.body.encode() if isinstance(self.body, str) else self.body
            headers.setdefault("Content-Type", "application/octet-stream")
        else:
            data = json.dumps(self.body).encode() if self.body is not None else b""
            headers.setdefault("Content-Type", "application/json")
        return data, headers


FAULTS = ("401", "404", "429", "500", "503", "timeout", "drop", "lost")


@dataclass
class Faults:
    """What goes wrong next: planned faults first (each optionally only for requests whose "METHOD PATH
    X-Amz-Target" contains its `on` text), then a random rate (seeded, so runs repeat)."""

    planned: list[tuple[str, str | None]] = field(default_factory=list)
    rate: float = 0.0
    kinds: tuple[str, ...] = ("429", "500", "503", "timeout", "drop")
    retry_after: float = 0.0
    timeout_sleep: float = 1.5  # longer than the test clients' read timeout
    seed: int = 0
    injected: list[str] = field(default_factory=list)
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)

    def plan(self, fault: str, count: int = 1, on: str | None = None) -> None:
        assert fault in FAULTS, fault
        self.planned += [(fault, on)] * count

    def next(self, signature: str) -> str | None:
        match = next((i for i, (_, on) in enumerate(self.planned) if on is None or on in signature), None)
        if match is not None:
            fault = self.planned.pop(match)[0]
        elif self.rate and self._rng.random() < self.rate:
            fault = self._rng.choice(self.kinds)
        else:
            return None
        self.injected.append(fault)
        return fault


Handler = Callable[[Request], Response]


class Emulator:
    """Base for emulators: `route(method, pattern)` registers handlers; patterns use {name} for segments."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.faults = Faults()
        self.requests: list[Request] = []
        self.lock = threading.RLock()
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._server: ThreadingHTTPServer | None = None

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        self._routes.append((method, re.compile(f"^{regex}$"), handler))

    def dispatch(self, request: Request) -> Response:
        for method, regex, handler in self._routes:
            match = regex.match(request.path)
            if match and method == request.method:
                request.params = match.groupdict()
                with self.lock:
                    return handler(request)
        return Response(404, {"error": {"message": f"no route {request.method} {request.path}", "type": "not_found"}})

    def fault_response(self, fault: str) -> Response:
        """How a fault looks on the wire; emulators may override for their platform's error shape."""
        body = {"error": {"message": f"injected {fault}", "type": "server_error", "code": fault}}
        if fault == "429":
            return Response(429, body, {"Retry-After": str(self.faults.retry_after)})
        return Response(int(fault), body)

    # -- serving -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "call start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Emulator:
        emulator = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out separately: no 40 ms delayed-ACK stall

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                request = Request(
                    self.command, split.path, parse_qs(split.query), dict(self.headers), body, split.query
                )
                target = request.headers.get("X-Amz-Target", "")
                fault = emulator.faults.next(f"{request.method} {request.path} {target}")
                if fault == "lost":
                    emulator.requests.append(request)
                    emulator.dispatch(request)
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault == "timeout":
                    time.sleep(emulator.faults.timeout_sleep)
                    self.close_connection = True
                    self.connection.close()
                    return
                emulator.requests.append(request)
                response = emulator.fault_response(fault) if fault else emulator.dispatch(request)
                data, headers = response.encoded()
                self.send_response(response.status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        # a short poll interval keeps stop() (which waits for the loop to notice) fast
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Proxy(Emulator):
    """Forwards every request to `upstream` (e.g. a moto server), so faults can be injected in front of it."""

    def __init__(self, upstream: str, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self.upstream = upstream.rstrip("/")

    def dispatch(self, request: Request) -> Response:
        import http.client

        target = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=30)
        path = request.path + (f"?{request.raw_query}" if request.raw_query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length", "expect")}
        conn.request(request.method, path, body=request.body or None, headers=headers)
        reply = conn.getresponse()
        body = reply.read()
        passed = {
            k: v
            for k, v in reply.getheaders()
            if k.lower() not in ("content-length", "transfer-encoding", "connection")
        }
        conn.close()
        return Response(reply.status, body, passed)
