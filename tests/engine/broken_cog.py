"""A stand-in for a Cog server that misbehaves on purpose, and proxies that
make a real one lose its completed webhooks or deliver all of them late.

A real Cog server cannot be made to answer 500, garbage or nothing at all, so
these tests use this small HTTP server instead: its health check says READY
(so the app accepts the prediction) and its PUT /predictions/{id} answers as
`mode` says. Every request is recorded.

bench/faults.py uses both too.
"""

import json
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, status, body, content_type="application/json"):
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _LocalServer:
    """A threaded HTTP server on a free local port, used as a context manager."""

    def _listen(self, handler):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class BrokenCogServer(_LocalServer):
    """mode: "500", "garbage", "hang" (never answers), "busy" (409 At capacity)
    or "accept" (202, as Cog does, but nothing ever runs)."""

    def __init__(self, mode, boot=None):
        self.mode = mode
        # What its health check says of its setup's start, as coglet's does:
        # change it to play a restart (None: a server that does not say).
        self.boot = boot
        self.requests = []
        self._release = threading.Event()
        server = self

        class Handler(_Handler):
            def do_GET(self):
                if self.path == "/health-check":
                    health = {"status": "READY"}
                    if server.boot:
                        health["setup"] = {"started_at": server.boot, "status": "succeeded"}
                    self._answer(200, json.dumps(health).encode())
                else:
                    self._answer(404, b"{}")

            def do_PUT(self):
                self._record()
                if server.mode == "hang":
                    server._release.wait(60)
                    self.close_connection = True
                    return
                if server.mode == "500":
                    self._answer(500, b"Internal Server Error", "text/plain")
                elif server.mode == "garbage":
                    self._answer(200, b"<html>\x00\xff not json", "text/html")
                elif server.mode == "busy":
                    self._answer(409, b'{"error":"At capacity - all prediction slots busy","status":"failed"}')
                else:
                    self._answer(202, json.dumps({"id": self.path.rsplit("/", 1)[-1], "status": "starting"}).encode())

            def do_POST(self):
                self._record()
                self._answer(200, b"{}")

            def _record(self):
                server.requests.append((self.command, self.path, time.monotonic(), self._body()))

        self._listen(Handler)

    def stop(self):
        self._release.set()
        super().stop()

    def puts(self, prediction_id=None):
        return [
            request
            for request in self.requests
            if request[0] == "PUT" and (prediction_id is None or request[1].endswith("/" + prediction_id))
        ]


class _CogProxy(_LocalServer):
    """Forwards every request to the Cog server at `cog_url`, except that the
    `webhook` of a prediction is rewritten to pass through this proxy on its
    way to the app, where `_webhook` decides what becomes of it."""

    def __init__(self, cog_url):
        import httpx

        self.cog_url = cog_url.rstrip("/")
        self.forwarded = []  # (prediction id, status) of webhooks passed on
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=30)
        proxy = self

        class Handler(_Handler):
            def do_GET(self):
                self._forward()

            def do_PUT(self):
                self._forward()

            def do_POST(self):
                if self.path.startswith("/_webhook?"):
                    body = self._body()
                    target = parse_qs(urlsplit(self.path).query)["to"][0]
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                    status, content, content_type = proxy._webhook(target, body, headers, json.loads(body))
                    self._answer(status, content, content_type)
                else:
                    self._forward()

            def _forward(self):
                body = self._body()
                if body and self.path.startswith(("/predictions", "/trainings")):
                    payload = json.loads(body)
                    if payload.get("webhook"):
                        payload["webhook"] = f"{proxy.url}/_webhook?to={quote(payload['webhook'], safe='')}"
                        body = json.dumps(payload).encode()
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                try:
                    response = proxy._client.request(
                        self.command, proxy.cog_url + self.path, content=body, headers=headers
                    )
                except Exception:
                    self._answer(502, b"Bad Gateway", "text/plain")
                    return
                self._answer(response.status_code, response.content, response.headers.get("content-type", ""))

        self._listen(Handler)

    def _pass_on(self, target, body, headers, payload):
        with self._lock:
            self.forwarded.append((payload.get("id"), payload.get("status")))
        try:
            response = self._client.post(target, content=body, headers=headers)
        except Exception:
            return 502, b"Bad Gateway", "text/plain"
        return response.status_code, response.content, response.headers.get("content-type", "")

    def stop(self):
        super().stop()
        self._client.close()


class WebhookDroppingProxy(_CogProxy):
    """A real Cog server behind a proxy that loses its completed webhooks.

    The first `drop` terminal webhooks of each prediction are answered 200 and
    never forwarded, as a proxy or network that acknowledged and then lost
    them would. The Cog server does not retry an acknowledged webhook, so the
    app hears nothing more of that run.
    """

    TERMINAL = ("succeeded", "failed", "canceled")

    def __init__(self, cog_url, drop=1):
        super().__init__(cog_url)
        self.drop = drop
        self.dropped = {}  # prediction id -> terminal webhooks dropped

    def _webhook(self, target, body, headers, payload):
        prediction_id, status = payload.get("id"), payload.get("status")
        with self._lock:
            lose = status in self.TERMINAL and self.dropped.get(prediction_id, 0) < self.drop
            if lose:
                self.dropped[prediction_id] = self.dropped.get(prediction_id, 0) + 1
        if lose:
            return 200, b"", "text/plain"
        return self._pass_on(target, body, headers, payload)


class WebhookDelayingProxy(_CogProxy):
    """A real Cog server whose webhooks all reach the app `delay` seconds late:
    each is acknowledged at once (so the server does not retry it) and
    passed on later, in the order they came, as a congested queue or network
    between the two would."""

    def __init__(self, cog_url, delay):
        super().__init__(cog_url)
        self.delay = delay
        self._due = queue.Queue()
        threading.Thread(target=self._deliver, daemon=True).start()

    def _webhook(self, target, body, headers, payload):
        self._due.put((time.monotonic() + self.delay, target, body, headers, payload))
        return 200, b"", "text/plain"

    def _deliver(self):
        while True:
            item = self._due.get()
            if item is None:
                return
            due, *webhook = item
            time.sleep(max(0.0, due - time.monotonic()))
            self._pass_on(*webhook)

    def stop(self):
        self._due.put(None)
        super().stop()


HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}
