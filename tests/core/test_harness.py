"""The emulator harness itself: routing, faults on the wire, the proxy."""

from __future__ import annotations

import http.client
import json

import pytest

from tests.emulators.harness import Emulator, Proxy, Request, Response


class Echo(Emulator):
    def __init__(self) -> None:
        super().__init__()
        self.route("GET", "/items/{item}", lambda r: Response(200, {"item": r.params["item"], "q": r.arg("q")}))
        self.route("POST", "/items", self.create)
        self.created = 0

    def create(self, request: Request) -> Response:
        self.created += 1
        return Response(201, {"n": self.created})


def call(url: str, method: str = "GET", path: str = "/items/a?q=1", timeout: float = 5) -> tuple[int, dict, dict]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    conn.request(method, path)
    reply = conn.getresponse()
    body = reply.read()
    return reply.status, json.loads(body or b"null"), dict(reply.getheaders())


def test_routes_and_planned_faults() -> None:
    with Echo() as emu:
        assert call(emu.url)[:2] == (200, {"item": "a", "q": "1"})
        emu.faults.retry_after = 3
        emu.faults.plan("429")
        status, _, headers = call(emu.url)
        assert status == 429 and headers["Retry-After"] == "3"
        emu.faults.plan("503", on="POST /items")
        assert call(emu.url)[0] == 200  # the fault waits for a matching request
        assert call(emu.url, "POST", "/items")[0] == 503
        assert call(emu.url, "GET", "/nowhere")[0] == 404


def test_dropped_and_lost_replies() -> None:
    with Echo() as emu:
        emu.faults.plan("drop", on="POST")
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            call(emu.url, "POST", "/items")
        assert emu.created == 0
        emu.faults.plan("lost", on="POST")
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            call(emu.url, "POST", "/items")
        assert emu.created == 1  # processed, reply lost


def test_timeouts_and_random_faults_are_seeded() -> None:
    with Echo() as emu:
        emu.faults.timeout_sleep = 0.5
        emu.faults.plan("timeout")
        with pytest.raises(TimeoutError):
            call(emu.url, timeout=0.2)
        emu.faults.rate, emu.faults.kinds = 0.5, ("500",)
        statuses = [call(emu.url)[0] for _ in range(40)]
        assert 5 < statuses.count(500) < 35


def test_proxy_forwards_and_injects() -> None:
    with Echo() as upstream, Proxy(upstream.url) as proxy:
        assert call(proxy.url)[:2] == (200, {"item": "a", "q": "1"})
        proxy.faults.plan("500")
        assert call(proxy.url)[0] == 500
        assert call(proxy.url, "POST", "/items")[1] == {"n": 1}
