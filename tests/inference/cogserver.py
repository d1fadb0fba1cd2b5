"""Helpers for the inference tests: a Cog server subprocess and its client,
image data URIs, and a local file server."""

import base64
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CogServer:
    """A `python -m inference.serve` subprocess and a small client for it."""

    def __init__(self, name, model, run_dir, env=None, family=None, train=False, upload_url=None):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(run_dir) / "server.log"
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "inference.serve",
            "--model",
            str(model),
            "--port",
            str(self.port),
            "--run-dir",
            str(run_dir),
        ]
        if family:
            command += ["--family", family]
        if train:
            command += ["--train"]
        if upload_url:
            command += ["--upload-url", upload_url]
        full_env = {
            **os.environ,
            "LIGHTBOX_TORCH_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=full_env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.client = httpx.Client(base_url=self.url, timeout=120)

    def health(self) -> dict:
        try:
            return self.client.get("/health-check", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return {"status": "UNREACHABLE"}

    def wait(self, until=("READY",), timeout=STARTUP_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-3000:]}")
            state = self.health()
            if state["status"] in until:
                return state
            if state["status"] == "SETUP_FAILED" and "SETUP_FAILED" not in until:
                raise RuntimeError(f"{self.name} setup failed: {state}")
            time.sleep(0.25)
        raise TimeoutError(f"{self.name} not ready: {self.log_path.read_text()[-3000:]}")

    def post(self, path, json=None, headers=None):
        # A 409 "at capacity" can come for a few ms after a sync call returns.
        for _ in range(100):
            response = self.client.post(path, json=json, headers=headers)
            if response.status_code != 409:
                return response
            time.sleep(0.05)
        return response

    def predict(self, **inputs) -> dict:
        response = self.post("/predictions", json={"input": inputs})
        assert response.status_code == 200, response.text
        return response.json()

    def images(self, **inputs) -> list[Image.Image]:
        body = self.predict(**inputs)
        assert body["status"] == "succeeded", body.get("error") or body.get("logs")
        return [decode(uri) for uri in body["output"]]

    def image(self, **inputs) -> np.ndarray:
        [only] = self.images(**inputs)
        return np.asarray(only)

    def stop(self):
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def decode(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,"), uri[:60]
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")


def data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def noise_image(width, height, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


class FileServer:
    """Serves a folder over HTTP (on 127.0.0.1 unless told) and counts the
    requests; `redirects` maps paths to the Location they answer with."""

    def __init__(self, folder, host="127.0.0.1", redirects=None):
        counts = self.counts = {}
        self.redirects = redirects or {}
        redirect_map = self.redirects
        puts = getattr(self, "puts", None)  # an UploadServer's
        base = {}

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self):
                counts[self.path] = counts.get(self.path, 0) + 1
                if self.path in redirect_map:
                    self.send_response(302)
                    self.send_header("Location", redirect_map[self.path])
                    self.end_headers()
                    return
                super().do_GET()

            def do_PUT(self):
                if puts is None:
                    self.send_error(405)
                    return
                # Numbered, as Lightbox's upload ids: two outputs may share a name.
                name = f"{len(puts) + 1}-{os.path.basename(self.path)}"
                body = self.rfile.read(int(self.headers["Content-Length"]))
                (Path(folder) / name).write_bytes(body)
                puts.append((name, self.headers.get("X-Prediction-Id"), len(body)))
                self.send_response(201)
                self.send_header("Location", f"{base['url']}/{name}")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), partial(Handler, directory=str(folder)))
        self.url = base["url"] = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class UploadServer(FileServer):
    """Cog's --upload-url as Lightbox answers it: a PUT is kept in the folder
    and answered 201 with a Location where a GET serves it back."""

    def __init__(self, folder):
        self.puts = []
        super().__init__(folder)

    @property
    def upload_url(self):
        return f"{self.url}/uploads/"


class Webhooks:
    """A webhook receiver: keeps every body it is sent."""

    def __init__(self):
        self.bodies = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for body in list(self.bodies):
                if predicate(body):
                    return body
            time.sleep(0.1)
        raise TimeoutError(self.bodies[-3:])

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
