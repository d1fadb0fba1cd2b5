"""The web process: Django's WSGI handler on a fixed pool of threads, served by
an ASGI server (uvicorn, in gunicorn's workers; lightbox.asgi builds it).

Every request runs as under gunicorn's gthread workers: on one of a fixed
number of long-lived threads, each with its persistent database connection,
through the same (sync) middleware. One kind of response differs: a streaming
response whose body is an async iterator (the API's `Prefer: wait`) is
returned to the event loop, which awaits its body there, so a waiting request
holds no thread and any number of them leave the pool to everyone else. The
iterator's own looks at the database go to the same pool, briefly
(`sync_to_async(..., thread_sensitive=False)` runs on the loop's default
executor, which is this pool).

The results path (Cog's webhooks and output uploads, Replicate's webhooks:
everything under RESULTS_PREFIX) runs on a pool of its own. A model server
uploads each output once and gives up when the answer is slow, so a result
must never queue behind client requests, however many are slow or waiting:
client requests cannot take a results thread, and the results path takes
none of the clients'. The looks of waiting requests go to the clients' pool.

Why not Django's own ASGIHandler: it runs each request's sync code on a thread
made for that request, so a persistent database connection lasts one request
(a new PostgreSQL connection per request), and the middleware would have to
switch between sync and async around every view.
"""

import asyncio
import io
import json
import logging
import os
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

from django.conf import settings
from django.db import connections
from django.http import HttpResponse
from gunicorn.arbiter import Arbiter
from uvicorn import Server
from uvicorn_worker import UvicornWorker

from app.core import waits

log = logging.getLogger(__name__)

# The workers share one listening socket. libuv (under uvloop) accepts every
# pending connection at each wake-up, so the first worker awake took all of a
# burst of keep-alive connections and served them on one core while the other
# idled (the list benchmark halved, bimodally). One accept per loop iteration
# lets the other workers take their share.
os.environ.setdefault("UV_TCP_SINGLE_ACCEPT", "1")

# uvicorn's settings, for gunicorn's worker (Procfile) and the tests' server alike.
UVICORN = {
    # X-Forwarded-For from 127.0.0.1 would otherwise replace the client's
    # address (which the throttles count by): any local client could pick one.
    "proxy_headers": False,
    "server_header": False,
}

# The results path (lightbox/urls.py's hook_patterns): served by a pool of its own.
RESULTS_PREFIX = "/hooks/"

# Request bodies larger than this are spooled to a temporary file, as Django's
# own handlers do (FILE_UPLOAD_MAX_MEMORY_SIZE's default).
BODY_IN_MEMORY = 2_621_440


def largest_body():
    """The largest request body any endpoint accepts (a Cog server's webhook,
    as a rule), with room for multipart's framing. A body is read whole
    before its view runs, so a larger one is refused before it is read."""
    return (
        max(
            settings.WEBHOOK_MAX_BYTES,
            settings.UPLOAD_MAX_BYTES,
            settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
            settings.UPLOAD_IMAGE_MAX_BYTES,
            settings.BUNDLE_MAX_BYTES,
        )
        + 1024 * 1024
    )


class ThreadedWSGI:
    """An ASGI application running `wsgi_app` on `threads` threads, and the
    requests under RESULTS_PREFIX on `results_threads` threads of their own;
    bodies over `max_body` bytes get 413."""

    def __init__(self, wsgi_app, threads, max_body, results_threads):
        self.wsgi_app = wsgi_app
        self.max_body = max_body
        self.pools = {
            "web": (ThreadPoolExecutor(threads, thread_name_prefix="web"), threads),
            "results": (ThreadPoolExecutor(results_threads, thread_name_prefix="results"), results_threads),
        }
        self.pool = self.pools["web"][0]
        self.results_pool = self.pools["results"][0]
        self._loop = None
        self._closed = False

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            raise ValueError(f"Lightbox serves HTTP only, not {scope['type']!r}")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # sync_to_async(thread_sensitive=False) runs on the loop's default executor.
            loop.set_default_executor(self.pool)
            self._loop = loop
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_body:
            return await _send_plain(send, 413, "Request body too large", scope["path"])
        body = await _read_body(receive, self.max_body)
        if body is None:
            return  # the client left before it finished sending
        if body is TOO_LARGE:
            return await _send_plain(send, 413, "Request body too large", scope["path"])
        environ = _environ(scope, body)
        pool = self.results_pool if scope["path"].startswith(RESULTS_PREFIX) else self.pool
        try:
            status, headers, response = await loop.run_in_executor(pool, self._run, environ, loop, send)
        except Exception:
            log.exception("Serving %s %s failed", scope["method"], scope["path"])
            await _send_plain(send, 500, "Internal server error", scope["path"])
            return
        if response is None:
            return  # sent in the thread
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if isinstance(response, bytes):
            await send({"type": "http.response.body", "body": response})
            return
        try:
            await _stream(response, receive, send)
        finally:
            # request_finished (closing stale database connections) belongs on a pool thread.
            await loop.run_in_executor(pool, response.close)

    def _run(self, environ, loop, send):
        """On a pool thread: the WSGI call. Returns (status, headers, body) for
        a response in memory, which the loop sends (no crossing back and forth
        per message: that cost ~0.8 ms of CPU a request); (status, headers,
        response) when the loop is to stream its async body; (status, headers,
        None) when a sync stream (a file) went out from here as it was read."""
        started = {}

        def start_response(status, headers, exc_info=None):
            started["status"] = int(status.split(" ", 1)[0])
            started["headers"] = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
            return lambda data: None  # the legacy write(); Django never calls it

        result = self.wsgi_app(environ, start_response)
        status, headers = started["status"], started["headers"]
        if getattr(result, "is_async", False):
            return status, headers, result

        def sent(message):
            asyncio.run_coroutine_threadsafe(send(message), loop).result()

        try:
            if isinstance(result, HttpResponse):
                return status, headers, result.content  # the usual case
            sent({"type": "http.response.start", "status": status, "headers": headers})
            for chunk in result:  # files and sync streams: read here, sent as they come
                if chunk:
                    sent({"type": "http.response.body", "body": chunk, "more_body": True})
            sent({"type": "http.response.body", "body": b""})
        finally:
            if hasattr(result, "close"):
                result.close()
        return status, headers, None

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._close_off_the_pool()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _close_off_the_pool(self):
        # Not on the pool, which close() shuts down; and before the loop ends,
        # which shuts down its default executor (the pool) too.
        loop = asyncio.get_running_loop()
        closed = loop.create_future()

        def close():
            self.close()
            loop.call_soon_threadsafe(closed.set_result, None)

        threading.Thread(target=close, name="web-close").start()
        await closed

    def close(self):
        """Close every pool thread's database connection (before, say, the
        test database is dropped), then the pools."""
        if self._closed:
            return
        self._closed = True
        for pool, threads in self.pools.values():
            _close_pool(pool, threads)


def _close_pool(pool, threads):
    everyone = threading.Barrier(threads)

    def close_connections():
        connections.close_all()
        try:
            everyone.wait(timeout=5)  # so that each thread takes one
        except threading.BrokenBarrierError:
            pass

    for _ in range(threads):
        pool.submit(close_connections)
    pool.shutdown(wait=True)


TOO_LARGE = object()


async def _read_body(receive, max_body):
    message = await receive()
    if message["type"] == "http.disconnect":
        return None
    if not message.get("more_body"):
        # Most requests (every GET): the body in one message, kept in memory.
        chunk = message.get("body", b"")
        return TOO_LARGE if len(chunk) > max_body else io.BytesIO(chunk)
    body = tempfile.SpooledTemporaryFile(max_size=BODY_IN_MEMORY)  # noqa: SIM115 - the request's; Django closes it
    body.write(message.get("body", b""))
    size = body.tell()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            body.close()
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body:  # chunked, without a Content-Length
            body.close()
            return TOO_LARGE
        body.write(chunk)
        if not message.get("more_body"):
            body.seek(0)
            return body


async def _stream(response, receive, send):
    """Send an async body, and stop awaiting it if the client goes away."""

    async def pump():
        async for chunk in response.streaming_content:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def client_left():
        while (await receive())["type"] != "http.disconnect":
            pass

    pumping, leaving = asyncio.ensure_future(pump()), asyncio.ensure_future(client_left())
    try:
        await asyncio.wait({pumping, leaving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pumping, leaving):
            task.cancel()
    if pumping.done() and not pumping.cancelled() and pumping.exception():
        raise pumping.exception()


TOO_LARGE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Upload too large · Lightbox</title><link rel="stylesheet" href="/static/css/app.css"></head>
<body><main><h1>That upload is too large</h1>
<p>Lightbox takes at most {mb} MB in one request, and this one was larger, so nothing was saved.</p>
<p>Go back and choose a smaller image (a photo saved as JPEG or WEBP is far smaller than as PNG).
With JavaScript on, the playground scales large images down before sending them.</p>
<p><a href="/">Back to the playground</a></p></main></body></html>
"""


async def _send_plain(send, status, text, path=""):
    """`text` as the whole answer; under /v1 as an RFC 7807 problem, as every
    answer of the API is (app.views.problems)."""
    content_type, body = b"text/plain; charset=utf-8", text.encode()
    if path == "/v1" or path.startswith("/v1/"):
        content_type = b"application/problem+json"
        body = json.dumps({"type": "about:blank", "title": text, "detail": f"{text}.", "status": status}).encode()
    elif status == 413 and not path.startswith(RESULTS_PREFIX):
        # A person who sent a form with a huge file (without JavaScript, which
        # scales images down first): a page that says what to do, not bare text.
        content_type, body = b"text/html; charset=utf-8", TOO_LARGE_PAGE.format(mb=largest_body() // 2**20).encode()
    try:
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
        await send({"type": "http.response.body", "body": body})
    except Exception:  # the response had already begun: nothing more to say
        log.debug("Could not send the %s", status, exc_info=True)


def _environ(scope, body):
    """The WSGI environ of an ASGI HTTP scope (PEP 3333: str of latin-1 bytes)."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode("utf-8").decode("latin-1"),
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "REMOTE_ADDR": client[0],
        "REMOTE_PORT": str(client[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper()
        if "_" in name:
            # As gunicorn: X_Forwarded_For must not pass for X-Forwarded-For.
            continue
        key = name.replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = raw_value.decode("latin-1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


class _Server(Server):
    async def shutdown(self, sockets=None):
        # uvicorn waits for every open response before it stops, so a waiting
        # request would hold the worker until gunicorn's grace period ends and
        # then lose its connection, its client never learning the prediction.
        # End the waits first: each answers its prediction as it is now.
        waits.release_all()
        await super().shutdown(sockets)


class Worker(UvicornWorker):
    """gunicorn's worker class for lightbox.asgi (Procfile): uvicorn (with uvloop and
    httptools when installed) on UVICORN's settings, whose waiting requests
    answer at once when the worker is told to stop."""

    CONFIG_KWARGS: ClassVar[dict] = {**UvicornWorker.CONFIG_KWARGS, **UVICORN}

    async def _serve(self):
        # UvicornWorker._serve (uvicorn-worker 0.4) with _Server in place of uvicorn's Server.
        self.config.app = self.wsgi
        server = _Server(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
