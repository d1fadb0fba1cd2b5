"""A stand-in for a Cog server that misbehaves on purpose.

A real Cog server cannot be made to answer 500, garbage or nothing at all, so
these tests use this small HTTP server instead: its health check says READY
(so the app accepts the prediction) and its PUT /predictions/{id} answers as
`mode` says. Every request is recorded.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class BrokenCogServer:
    """mode: "500", "garbage", "hang" (never answers), "busy" (409 At capacity)
    or "accept" (202, as Cog does, but nothing ever runs)."""

    def __init__(self, mode):
        self.mode = mode
        self.requests = []
        self._release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.path == "/health-check":
                    self._answer(200, json.dumps({"status": "READY"}).encode())
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
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append((self.command, self.path, time.monotonic(), body))

            def _answer(self, status, body, content_type="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def puts(self, prediction_id=None):
        return [
            request for request in self.requests
            if request[0] == "PUT" and (prediction_id is None or request[1].endswith("/" + prediction_id))
        ]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
