"""A local HTTP server that answers like Replicate's cloud API, for tests.

Replicate cannot be reached from the test machines, so this fake plays it: the
HTTP API under ``/v1`` (as Replicate documents it and as the official
``replicate`` 1.0.7 client expects it), simulated runs with logs, PNG outputs
that expire, and signed webhooks. It serves the catalog the app ships,
``app/services/catalog_data/replicate.json``.

Usage::

    with FakeReplicate(file_ttl=2) as fake:
        client = replicate.Client(api_token=fake.token, base_url=fake.url)
        out = client.run("stability-ai/sdxl:7762fd07...", input={"prompt": "a cat",
                         "width": 64, "height": 64, "seed": 1})
        fake.requests[-1].json          # what was sent
        fake.wait_for_webhooks(1)       # webhook deliveries, signed with fake.webhook_secret

Endpoints (all but /files need ``Authorization: Bearer <fake.token>``):
POST /v1/predictions, POST /v1/models/{o}/{n}/predictions (official models
only, as on Replicate: add "o/n" to ``fake.official_models``),
GET /v1/predictions[?cursor=], GET /v1/predictions/{id},
POST /v1/predictions/{id}/cancel, GET /v1/models/{o}/{n}, GET
/v1/models/{o}/{n}/versions[/{id}], GET /v1/webhooks/default/secret,
GET /files/{token}/out-{i}.png (no auth; 404 once ``file_ttl`` has passed);
trainings: POST /v1/models (create, 409 if it exists), POST
/v1/models/{o}/{n}/versions/{id}/trainings (``destination`` must be a model
made so: else 404), GET /v1/trainings[/{id}], POST /v1/trainings/{id}/cancel.
A training goes starting -> processing ("step k/N loss=x" lines) -> succeeded
with output {"version": "dest:id", "weights": URL of a .safetensors}, and the
version is added at the destination; trainings send no webhooks (polled).

Behaviour copied from Replicate (docs, API reference, observed bodies):
- Errors are problem JSON: 401 {"title": "Unauthenticated", ...}; 404
  {"detail": "The requested resource could not be found.", "status": 404};
  422 "Invalid version or not permitted" for unknown versions and for the model
  route of a non-official model; 422 "Input validation failed" with
  ``invalid_fields`` [{"type", "field", "description"}] in gojsonschema words
  (required, invalid_type, number_gte, number_lte, enum, format,
  additional_property_not_allowed). Unknown *input* fields are accepted and
  echoed (cog drops them); unknown top-level body fields are rejected.
- ``Prefer: wait[=N]`` holds the create request until the prediction is
  terminal or its output files are all there (status may still be
  "processing"), or N s (default and max 60) pass; then the prediction is
  returned as it is (status "starting"/"processing" if not done).
  201 when done, 202 when not; ``Location`` points at the prediction.
- Runs: starting -> processing (logs "Using seed: N", "Prompt: ...", then one
  tqdm line per step, "k/N" in each) -> succeeded with output = list of file
  URLs; failed with ``error``; canceled. Data (input, output, logs) is removed
  ``data_ttl`` s after completion (``data_removed`` true). Both TTLs count on
  ``clock`` (``time.monotonic`` unless a test sets its own).
- Images are deterministic for (prompt, seed, index) and width x height
  (SDXL img2img takes the size of the input image, a data: or http URL).
  fofr/sdxl-turbo writes JPEGs and fails unless agree_to_research_only, as its
  predictor does. Sizes not divisible by 8 fail with diffusers' message.
- Webhooks: POST of the prediction JSON for the events in
  ``webhook_events_filter`` (default ``default_webhook_events`` = output and
  completed, as the docs say); "start" at creation, "logs"/"output" at most
  once per ``webhook_throttle`` (0.5 s) each, "completed" always. Signed with
  Standard Webhooks headers (webhook-id, webhook-timestamp, webhook-signature
  "v1,<base64 HMAC-SHA256 of id.timestamp.body>"). Only "completed" is retried
  (``webhook_retry_delays``) on a non-2xx answer or connection error, with the
  same webhook-id. Redirects are not followed. http:// webhooks are allowed.

Knobs (Python attributes and methods; also POST /_fake/<method> with JSON kwargs
for script, fault, expire_files and reset, for a fake in another process):
- ``script(**behavior)``: how the next created prediction runs (FIFO; fields of
  ``Behavior``: starting_delay, duration, steps, outcome "succeed" | "nsfw" |
  "error", error, nsfw_outputs (indices dropped by the safety checker), hold
  "starting" | "processing" (stay there until ``release(id)``),
  duplicate_webhooks, late_processing_webhook, drop_completed_webhook).
  ``default_behavior`` applies otherwise.
- ``fault(kind, count=1, method=None, path=None, ...)``: the next ``count``
  matching requests answer with kind "error" (``status``, default 500),
  "throttle" (429 + Retry-After), "garbage" (200, not JSON) or "hang" (no
  answer for ``seconds``, then the connection closes).
- ``requests``: every request received (method, path, query, headers, body,
  json); ``webhook_deliveries``: every webhook attempt (event, headers, body,
  status, error). ``send_webhook(id)`` delivers the current state once more.
- ``expire_files()`` expires every output file now; ``release(id)``;
  ``wait_for_status(id, status)``; ``wait_for_webhooks(n)``; ``reset()``.

Run it alone with ``python -m tests.fakes.replicate_cloud [port]``: it prints
its url, token and webhook_secret as JSON.

Catalog caveats (see the commit message): the SD Turbo entry is a placeholder
(no Replicate model found); fofr/sdxl-turbo's inputs come from its predict.py,
not from the version itself; cog_version and most created_at values are
approximate.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import hashlib
import hmac
import io
import json
import os
import queue
import random
import re
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image, ImageDraw

CATALOG_PATH = Path(__file__).resolve().parents[2] / "app" / "services" / "catalog_data" / "replicate.json"
TERMINAL = ("succeeded", "failed", "canceled")
WEBHOOK_EVENTS = ("start", "output", "logs", "completed")
NSFW_ERROR = "NSFW content detected. Try running it again, or try a different prompt."
MODEL_ERROR = "CUDA out of memory. Tried to allocate 2.00 GiB"
NOT_FOUND = {"detail": "The requested resource could not be found.", "status": 404}
INVALID_VERSION = {
    "title": "Invalid version or not permitted",
    "detail": "The specified version does not exist (or perhaps you don't have permission to use it?)",
    "status": 422,
}
# Model metadata Replicate shows beside the versions (not part of the catalog file).
MODEL_EXTRAS = {
    "stability-ai/sdxl": {
        "github_url": "https://github.com/replicate/cog-sdxl",
        "paper_url": "https://arxiv.org/abs/2307.01952",
    },
    "stability-ai/stable-diffusion": {
        "github_url": "https://github.com/replicate/cog-stable-diffusion",
        "paper_url": "https://arxiv.org/abs/2112.10752",
    },
    "fofr/sdxl-turbo": {"github_url": "https://github.com/fofr/cog-sdxl-turbo"},
}
JPEG_MODELS = {"fofr/sdxl-turbo"}  # its predictor saves out-{i}.jpg
RESEARCH_ONLY_ERROR = (
    "You must agree to use this model for research-only, "
    "you cannot use this model comercially."
)  # sic, as the predictor says


@dataclasses.dataclass
class Behavior:
    """How one simulated prediction runs. Times are in seconds."""

    starting_delay: float = 0.05
    duration: float = 0.2
    steps: int | None = None  # default: input num_inference_steps (or the schema default)
    outcome: str = "succeed"  # "succeed" | "nsfw" | "error"
    error: str = MODEL_ERROR
    nsfw_outputs: tuple = ()  # output indices the safety checker drops
    hold: str | None = None  # "starting" | "processing": wait for release(id)
    duplicate_webhooks: bool = False
    late_processing_webhook: bool = False
    drop_completed_webhook: bool = False


@dataclasses.dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict
    headers: dict  # lower-case names
    body: bytes
    json: object


@dataclasses.dataclass
class WebhookDelivery:
    prediction_id: str
    event: str
    url: str
    headers: dict
    body: bytes
    attempt: int
    status: int | None = None
    error: str | None = None

    @property
    def json(self):
        return json.loads(self.body)


def _now():
    return datetime.now(timezone.utc)


def _iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if dt else None


def sign_webhook(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks signature: base64 HMAC-SHA256 of "id.timestamp.body"."""
    key = base64.b64decode(secret.split("_", 1)[1])
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def render_image(prompt: str, seed: int, index: int, width: int, height: int, fmt: str = "PNG") -> bytes:
    """A deterministic picture for (prompt, seed, index) of exactly width x height."""
    digest = hashlib.sha256(f"{prompt}\x00{seed}\x00{index}".encode()).digest()
    rng = random.Random(digest)
    img = Image.new("RGB", (width, height), tuple(digest[:3]))
    draw = ImageDraw.Draw(img)
    for _ in range(8):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randrange(1, width + 1), y0 + rng.randrange(1, height + 1)
        color = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=color)
    buf = io.BytesIO()
    if fmt == "PNG":
        img.save(buf, "PNG", compress_level=1)
    else:
        img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


# --- input validation, in the words of gojsonschema (what Replicate's API uses) ---


def _num(value):
    return str(int(value)) if float(value).is_integer() else str(value)


def _json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "unknown")


def _resolve(prop: dict, schemas: dict) -> dict:
    """Merge a cog property with the enum schemas it points at through allOf/$ref."""
    merged = {k: v for k, v in prop.items() if k != "allOf"}
    for part in prop.get("allOf", []):
        target = schemas.get(part.get("$ref", "").rsplit("/", 1)[-1], part)
        merged = {**target, **merged}
    return merged


def validate_input(values: dict, schema: dict, schemas: dict) -> list:
    errors = []
    for name in schema.get("required", []):
        if name not in values:
            errors.append({"type": "required", "field": "input", "description": f"{name} is required"})
    for name, value in values.items():
        prop = schema.get("properties", {}).get(name)
        if prop is None:
            continue  # unknown inputs are accepted; cog drops them
        prop, field = _resolve(prop, schemas), f"input.{name}"
        expected, given = prop.get("type"), _json_type(value)
        ok = {
            "integer": given == "integer",
            "number": given in ("integer", "number"),
            "string": given == "string",
            "boolean": given == "boolean",
            "array": given == "array",
            "object": given == "object",
            None: True,
        }.get(expected, True)
        if not ok:
            errors.append(
                {
                    "type": "invalid_type",
                    "field": field,
                    "description": f"Invalid type. Expected: {expected}, given: {given}",
                }
            )
            continue
        if "enum" in prop and value not in prop["enum"]:
            allowed = ", ".join(json.dumps(v) for v in prop["enum"])
            errors.append(
                {"type": "enum", "field": field, "description": f"{name} must be one of the following: {allowed}"}
            )
        if given in ("integer", "number"):
            if "minimum" in prop and value < prop["minimum"]:
                errors.append(
                    {
                        "type": "number_gte",
                        "field": field,
                        "description": f"Must be greater than or equal to {_num(prop['minimum'])}",
                    }
                )
            if "maximum" in prop and value > prop["maximum"]:
                errors.append(
                    {
                        "type": "number_lte",
                        "field": field,
                        "description": f"Must be less than or equal to {_num(prop['maximum'])}",
                    }
                )
        if prop.get("format") == "uri" and not urllib.parse.urlsplit(value).scheme:
            errors.append({"type": "format", "field": field, "description": "Does not match format 'uri'"})
    return errors


def validation_problem(errors: list) -> dict:
    detail = "".join(
        f"- {e['field']}: {e['description']}\n" if e["field"] else f"- {e['description']}\n" for e in errors
    )
    return {"detail": detail, "status": 422, "title": "Input validation failed", "invalid_fields": errors}


class _Prediction:
    def __init__(self, pid, seq, version, inp, webhook, events, behavior):
        self.id, self.seq, self.version, self.input = pid, seq, version, inp
        self.model = f"{version['owner']}/{version['name']}"
        self.webhook, self.events, self.behavior = webhook, events, behavior
        self.status, self.logs, self.output, self.error = "starting", "", None, None
        self.metrics, self.data_removed, self.output_ready = {}, False, False
        self.created_at, self.started_at, self.completed_at = _now(), None, None
        self.created_mono = time.monotonic()
        self.started_mono = self.completed_mono = None
        self.completed_clock = None  # FakeReplicate.clock at completion (data_ttl)
        self.released = threading.Event()
        self.cancel_requested = threading.Event()
        self.last_throttled = {}
        self.webhooks = None  # queue feeding this prediction's webhook sender
        self.stale_body = None  # a 'processing' snapshot for late_processing_webhook

    def to_json(self, api_url, site_url):
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version["version_id"],
            "input": self.input,
            "logs": self.logs,
            "output": self.output,
            "data_removed": self.data_removed,
            "error": self.error,
            "status": self.status,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "completed_at": _iso(self.completed_at),
            "source": "api",
            "metrics": dict(self.metrics),
            "urls": {
                "get": f"{api_url}/predictions/{self.id}",
                "cancel": f"{api_url}/predictions/{self.id}/cancel",
                "web": f"{site_url}/p/{self.id}",
            },
        }


class FakeReplicate:
    """Replicate's HTTP API on 127.0.0.1 in a background thread (see the module docstring)."""

    def __init__(
        self,
        *,
        token=None,
        webhook_secret=None,
        catalog_path=CATALOG_PATH,
        file_ttl=3600.0,
        data_ttl=3600.0,
        page_size=100,
        official_models=(),
        default_webhook_events=("output", "completed"),
        webhook_throttle=0.5,
        webhook_retry_delays=(0.2, 0.5, 1.0),
        webhook_timeout=5.0,
        host="127.0.0.1",
        port=0,
        clock=time.monotonic,
    ):
        self.token = token or "r8_" + secrets.token_urlsafe(27)
        self.webhook_secret = webhook_secret or "whsec_" + base64.b64encode(os.urandom(32)).decode()
        self.file_ttl, self.data_ttl, self.page_size = file_ttl, data_ttl, page_size
        # What file_ttl and data_ttl count on; a test can move it by hand.
        self.clock = clock
        self.official_models = set(official_models)
        self.default_webhook_events = tuple(default_webhook_events)
        self.webhook_throttle, self.webhook_retry_delays = webhook_throttle, tuple(webhook_retry_delays)
        self.webhook_timeout = webhook_timeout
        self.default_behavior = Behavior()
        self.versions = json.loads(Path(catalog_path).read_text())
        self.requests: list[RecordedRequest] = []
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.predictions: dict[str, _Prediction] = {}
        self._scripts = collections.deque()
        self._faults = []
        self._files = {}
        self.created_models = {}  # "owner/name" -> model JSON (POST /v1/models)
        self.trainings = {}  # id -> training state (dict)
        self.training_steps, self.training_step_delay = 3, 0.05
        self._seq = 0
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer((host, port), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = None
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self.api_url = self.url + "/v1"
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)

    # --- lifecycle ---

    def start(self):
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-replicate", daemon=True
        )
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread:
            self._server.shutdown()
            self._thread = None
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- knobs ---

    def script(self, count=1, **behavior):
        """Queue how the next `count` created predictions run (fields of Behavior)."""
        for _ in range(count):
            self._scripts.append(dataclasses.replace(self.default_behavior, **behavior))

    def fault(self, kind, count=1, method=None, path=None, status=500, seconds=30.0, retry_after=1):
        """The next `count` requests matching method/path-prefix misbehave (see module docstring)."""
        assert kind in ("error", "throttle", "garbage", "hang"), kind
        with self._lock:
            self._faults.append(
                {
                    "kind": kind,
                    "count": count,
                    "method": method,
                    "path": path,
                    "status": status,
                    "seconds": seconds,
                    "retry_after": retry_after,
                }
            )

    def release(self, prediction_id):
        self.predictions[prediction_id].released.set()

    def expire_files(self):
        with self._lock:
            self._files.clear()

    def reset(self):
        with self._lock:
            self.requests.clear()
            self.webhook_deliveries.clear()
            self._faults.clear()
            self._scripts.clear()

    # --- trainings ---

    def _create_training(self, version, destination, given):
        tid = base64.b32encode(os.urandom(16)).decode().lower().rstrip("=")
        training = {
            "id": tid,
            "model": f"{version['owner']}/{version['name']}",
            "version": version["version_id"],
            "destination": destination,
            "input": given,
            "logs": "",
            "output": None,
            "error": None,
            "status": "starting",
            "created_at": _now(),
            "started_at": None,
            "completed_at": None,
            "base": version,
        }
        with self._lock:
            self.trainings[tid] = training
        threading.Thread(target=self._train, args=(training,), daemon=True).start()
        return training

    def _train(self, training):
        """starting -> processing ("step k/N loss=x" per step) -> succeeded with
        output {version: "dest:id", weights: URL of a .safetensors}, the new
        version added at the destination (as Replicate's trainers do)."""
        time.sleep(self.training_step_delay)
        steps = int(training["input"].get("max_train_steps") or self.training_steps)
        with self._lock:
            if training["status"] in TERMINAL:
                return
            training.update(status="processing", started_at=_now())
        for k in range(1, steps + 1):
            time.sleep(self.training_step_delay)
            with self._lock:
                if training["status"] in TERMINAL:
                    return
                training["logs"] += f"step {k}/{steps} loss={1 / (k + 1):.4f}\n"
        header = json.dumps({"__metadata__": {"training": training["id"]}}).encode()
        header += b" " * (-len(header) % 8)
        token = secrets.token_urlsafe(24)
        version_id = hashlib.sha256(training["id"].encode()).hexdigest()
        owner, _, name = training["destination"].partition("/")
        with self._lock:
            if training["status"] in TERMINAL:
                return
            self._files[token] = (
                len(header).to_bytes(8, "little") + header,
                "application/octet-stream",
                self.clock() + self.file_ttl,
            )
            base = training["base"]
            self.versions.append(
                {**base, "owner": owner, "name": name, "version_id": version_id, "created_at": _iso(_now())}
            )
            training.update(
                status="succeeded",
                completed_at=_now(),
                output={
                    "version": f"{training['destination']}:{version_id}",
                    "weights": f"{self.url}/files/{token}/trained.safetensors",
                },
            )

    def _training_json(self, training):
        started, completed = training["started_at"], training["completed_at"]
        metrics = {"predict_time": (completed - started).total_seconds()} if started and completed else {}
        return {
            **{k: v for k, v in training.items() if k != "base"},
            "created_at": _iso(training["created_at"]),
            "started_at": _iso(started),
            "completed_at": _iso(completed),
            "source": "api",
            "metrics": metrics,
            "urls": {
                "get": f"{self.api_url}/trainings/{training['id']}",
                "cancel": f"{self.api_url}/trainings/{training['id']}/cancel",
                "web": f"{self.url}/p/{training['id']}",
            },
        }

    def prediction_json(self, prediction_id):
        with self._lock:
            return self._json(self.predictions[prediction_id])

    def send_webhook(self, prediction_id, event="logs"):
        """Deliver the prediction's current state once more (a duplicate, as far as the app knows)."""
        p = self.predictions[prediction_id]
        self._deliver(
            p,
            event,
            json.dumps(self.prediction_json(prediction_id)).encode(),
            "msg_" + secrets.token_hex(12),
            retry=False,
        )

    def wait_for_status(self, prediction_id, statuses=TERMINAL, timeout=10.0):
        statuses = (statuses,) if isinstance(statuses, str) else statuses
        with self._changed:
            ok = self._changed.wait_for(lambda: self.predictions[prediction_id].status in statuses, timeout)
        assert ok, f"{prediction_id} is {self.predictions[prediction_id].status}, not in {statuses}"
        return self.prediction_json(prediction_id)

    def wait_for_webhooks(self, count, timeout=10.0, event=None):
        """Wait until `count` deliveries (of `event`, if given) were attempted; return them."""

        def matching():
            return [d for d in self.webhook_deliveries if event is None or d.event == event]

        with self._changed:
            self._changed.wait_for(lambda: len(matching()) >= count, timeout)
        found = matching()
        assert len(found) >= count, f"{len(found)} webhook deliveries, expected {count}"
        return found

    # --- catalog ---

    def _version(self, owner, name, version_id):
        return next(
            (
                v
                for v in self.versions
                if v["version_id"] == version_id and (owner is None or (v["owner"], v["name"]) == (owner, name))
            ),
            None,
        )

    def _model_versions(self, owner, name):
        found = [v for v in self.versions if (v["owner"], v["name"]) == (owner, name)]
        return sorted(found, key=lambda v: v["created_at"], reverse=True)

    @staticmethod
    def _version_json(v):
        return {
            "id": v["version_id"],
            "created_at": v["created_at"],
            "cog_version": v["cog_version"],
            "openapi_schema": v["openapi_schema"],
        }

    def _model_json(self, owner, name):
        versions = self._model_versions(owner, name)
        extras = MODEL_EXTRAS.get(f"{owner}/{name}", {})
        return {
            "url": f"https://replicate.com/{owner}/{name}",
            "owner": owner,
            "name": name,
            "description": versions[0]["description"],
            "visibility": "public",
            "github_url": extras.get("github_url"),
            "paper_url": extras.get("paper_url"),
            "license_url": extras.get("license_url"),
            "run_count": 0,
            "cover_image_url": None,
            "default_example": None,
            "is_official": f"{owner}/{name}" in self.official_models,
            "latest_version": self._version_json(versions[0]),
        }

    # --- predictions ---

    def _json(self, p):
        if p.completed_clock is not None and not p.data_removed and self.clock() - p.completed_clock > self.data_ttl:
            p.data_removed, p.input, p.output, p.logs = True, {}, None, None
        return p.to_json(self.api_url, self.url)

    def _create(self, version, body):
        events = body.get("webhook_events_filter") or list(self.default_webhook_events)
        with self._lock:
            behavior = self._scripts.popleft() if self._scripts else dataclasses.replace(self.default_behavior)
            self._seq += 1
            pid = base64.b32encode(os.urandom(16)).decode().lower().rstrip("=")
            p = _Prediction(pid, self._seq, version, body["input"], body.get("webhook"), events, behavior)
            self.predictions[pid] = p
        if p.webhook:
            p.webhooks = queue.Queue()
            threading.Thread(target=self._webhook_sender, args=(p,), daemon=True).start()
            self._emit(p, "start")
        threading.Thread(target=self._run, args=(p,), name=f"prediction-{pid}", daemon=True).start()
        return p

    def _update(self, p, **fields):
        with self._changed:
            if p.status in TERMINAL:
                return False
            for key, value in fields.items():
                setattr(p, key, value)
            self._changed.notify_all()
            return True

    def _pause(self, p, seconds):
        """Sleep, waking early when canceled or stopping; True while the run should go on."""
        p.cancel_requested.wait(seconds)
        return p.status not in TERMINAL and not self._stopping.is_set()

    def _hold(self, p, stage):
        while p.behavior.hold == stage and not p.released.is_set():
            if not self._pause(p, 0.02):
                return False
        return p.status not in TERMINAL

    def _run(self, p):
        b, version = p.behavior, p.version
        props = version["openapi_schema"]["components"]["schemas"]["Input"]["properties"]
        values = {k: v.get("default") for k, v in props.items()}
        values.update(p.input)
        if not self._pause(p, b.starting_delay) or not self._hold(p, "starting"):
            return
        seed = values.get("seed")
        seed = int.from_bytes(os.urandom(2), "big") if seed is None else seed
        self._update(
            p,
            status="processing",
            started_at=_now(),
            started_mono=time.monotonic(),
            logs=f"Using seed: {seed}\nPrompt: {values.get('prompt')}\ntxt2img mode\n",
        )
        steps = int(b.steps or values.get("num_inference_steps") or 1)
        for k in range(1, steps + 1):
            if not self._pause(p, b.duration / steps):
                return
            pct = k * 100 // steps
            bar = ("█" * (pct // 10)).ljust(10)
            line = f"{pct:3d}%|{bar}| {k}/{steps} [00:00<00:00, {steps / max(b.duration, 0.001):.2f}it/s]\n"
            self._update(p, logs=p.logs + line)
            self._emit(p, "logs")
            if k == 1 and not self._hold(p, "processing"):
                return
        self._finish(p, values, seed)

    def _finish(self, p, values, seed):
        b = p.behavior
        error = self._model_error(p, values)
        if b.outcome == "error":
            error = b.error
        if error is None:
            width, height = self._size(values)
            fmt, ext = ("JPEG", "jpg") if p.model in JPEG_MODELS else ("PNG", "png")
            urls, logs = [], p.logs
            for i in range(int(values.get("num_outputs") or 1)):
                if b.outcome == "nsfw" or i in b.nsfw_outputs:
                    logs += f"NSFW content detected in image {i}\n"
                    continue
                token = secrets.token_urlsafe(24)
                data = render_image(str(values.get("prompt")), seed, i, width, height, fmt)
                with self._lock:
                    self._files[token] = (data, f"image/{ext.replace('jpg', 'jpeg')}", self.clock() + self.file_ttl)
                urls.append(f"{self.url}/files/{token}/out-{i}.{ext}")
            if urls:
                self._update(p, output=urls, logs=logs, output_ready=True)
                self._emit(p, "output")
                if not self._pause(p, 0.02):
                    return
            else:
                error = NSFW_ERROR
        self._complete(p, "failed" if error else "succeeded", error=error)

    def _model_error(self, p, values):
        """What the real predictor or diffusers would raise for this input."""
        if p.model == "fofr/sdxl-turbo" and not values.get("agree_to_research_only"):
            return RESEARCH_ONLY_ERROR
        width, height = self._size(values)
        if width % 8 or height % 8 or width <= 0 or height <= 0:
            return f"`height` and `width` have to be divisible by 8 but are {height} and {width}."
        if width * height > 2048 * 2048:
            return MODEL_ERROR
        return None

    @staticmethod
    def _size(values):
        image = values.get("image")
        if image and not values.get("mask") and "prompt_strength" in values:  # SDXL img2img
            try:
                if image.startswith("data:"):
                    data = base64.b64decode(image.split(",", 1)[1])
                else:
                    with urllib.request.urlopen(image, timeout=5) as response:
                        data = response.read()
                return Image.open(io.BytesIO(data)).size
            except Exception:  # noqa: BLE001 - the model would fail later; keep the requested size
                pass
        return int(values.get("width") or 512), int(values.get("height") or 512)

    def _complete(self, p, status, error=None):
        with self._changed:
            if p.status in TERMINAL:
                return False
            p.status, p.error, p.completed_at, p.completed_mono = status, error, _now(), time.monotonic()
            p.completed_clock = self.clock()
            p.metrics = {"total_time": round(p.completed_mono - p.created_mono, 6)}
            if p.started_mono:
                p.metrics["predict_time"] = round(p.completed_mono - p.started_mono, 6)
            p.cancel_requested.set()
            self._changed.notify_all()
        self._emit(p, "completed")
        return True

    # --- webhooks ---

    def _emit(self, p, event):
        if p.webhook and event == "logs" and p.behavior.late_processing_webhook:
            with self._lock:
                p.stale_body = json.dumps(self._json(p)).encode()
        if not p.webhook or event not in p.events:
            if event == "completed" and p.webhooks:
                p.webhooks.put(None)
            return
        now = time.monotonic()
        if event in ("logs", "output"):
            if now - p.last_throttled.get(event, -1e9) < self.webhook_throttle:
                return
            p.last_throttled[event] = now
        with self._lock:
            body = json.dumps(self._json(p)).encode()
        if event == "completed" and p.behavior.drop_completed_webhook:
            p.webhooks.put(None)
            return
        p.webhooks.put((event, body))
        if event == "completed":
            p.webhooks.put(None)

    def _webhook_sender(self, p):
        """Deliver one prediction's webhooks in order; a late 'processing' one on demand."""
        while not self._stopping.is_set():
            item = p.webhooks.get()
            if item is None:
                break
            event, body = item
            msg_id = "msg_" + secrets.token_hex(12)
            for _ in range(2 if p.behavior.duplicate_webhooks else 1):
                self._deliver(p, event, body, msg_id, retry=event == "completed")
        if p.behavior.late_processing_webhook and p.stale_body:
            self._deliver(p, "logs", p.stale_body, "msg_" + secrets.token_hex(12), retry=False)

    def _deliver(self, p, event, body, msg_id, retry):
        delays = self.webhook_retry_delays if retry else ()
        for attempt in range(1, len(delays) + 2):
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign_webhook(self.webhook_secret, msg_id, timestamp, body),
            }
            delivery = WebhookDelivery(p.id, event, p.webhook, headers, body, attempt)
            try:
                request = urllib.request.Request(p.webhook, data=body, headers=headers, method="POST")
                with self._opener.open(request, timeout=self.webhook_timeout) as response:
                    delivery.status = response.status
            except urllib.error.HTTPError as exc:
                delivery.status = exc.code
            except (OSError, ValueError) as exc:
                delivery.error = repr(exc)
            with self._changed:
                self.webhook_deliveries.append(delivery)
                self._changed.notify_all()
            if delivery.status and 200 <= delivery.status < 300:
                return
            if attempt <= len(delays) and self._stopping.wait(delays[attempt - 1]):
                return


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # Replicate does not follow redirects for webhooks


def _make_handler(fake: FakeReplicate):
    class Handler(_Handler):
        pass

    Handler.fake = fake
    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeReplicate
    ROUTES = [
        ("GET", r"/v1/predictions", "list_predictions"),
        ("POST", r"/v1/predictions", "create_prediction"),
        ("GET", r"/v1/predictions/(?P<pid>[^/]+)", "get_prediction"),
        ("POST", r"/v1/predictions/(?P<pid>[^/]+)/cancel", "cancel_prediction"),
        ("POST", r"/v1/models/(?P<owner>[^/]+)/(?P<name>[^/]+)/predictions", "create_model_prediction"),
        ("GET", r"/v1/models/(?P<owner>[^/]+)/(?P<name>[^/]+)", "get_model"),
        ("GET", r"/v1/models/(?P<owner>[^/]+)/(?P<name>[^/]+)/versions", "list_versions"),
        ("GET", r"/v1/models/(?P<owner>[^/]+)/(?P<name>[^/]+)/versions/(?P<vid>[^/]+)", "get_version"),
        ("POST", r"/v1/models", "create_model"),
        (
            "POST",
            r"/v1/models/(?P<owner>[^/]+)/(?P<name>[^/]+)/versions/(?P<vid>[^/]+)/trainings",
            "create_training",
        ),
        ("GET", r"/v1/trainings", "list_trainings"),
        ("GET", r"/v1/trainings/(?P<tid>[^/]+)", "get_training"),
        ("POST", r"/v1/trainings/(?P<tid>[^/]+)/cancel", "cancel_training"),
        ("GET", r"/v1/webhooks/default/secret", "get_secret"),
        ("GET", r"/files/(?P<token>[^/]+)/(?P<filename>[^/]+)", "get_file"),
        ("HEAD", r"/files/(?P<token>[^/]+)/(?P<filename>[^/]+)", "get_file"),
        ("POST", r"/_fake/(?P<action>script|fault|expire_files|reset)", "control"),
    ]

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._dispatch()

    do_POST = do_HEAD = do_PUT = do_DELETE = do_GET

    # --- plumbing ---

    def _dispatch(self):
        fake = self.fake
        split = urllib.parse.urlsplit(self.path)
        path, query = split.path.rstrip("/") or "/", dict(urllib.parse.parse_qsl(split.query))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        if not path.startswith("/_fake"):
            with fake._lock:
                fake.requests.append(
                    RecordedRequest(
                        self.command, path, query, {k.lower(): v for k, v in self.headers.items()}, body, parsed
                    )
                )
        if self._fault(path):
            return
        for method, pattern, action in self.ROUTES:
            match = re.fullmatch(pattern, path)
            if match and method == self.command:
                if path.startswith("/v1") and not self._authorized():
                    return self._send(
                        401,
                        {
                            "title": "Unauthenticated",
                            "detail": "You did not pass a valid authentication token",
                            "status": 401,
                        },
                    )
                if body and parsed is None and self.command == "POST":
                    return self._send(
                        400, {"title": "Bad request", "status": 400, "detail": "The request body is not valid JSON."}
                    )
                return getattr(self, action)(parsed, query, **match.groupdict())
        self._send(404, NOT_FOUND)

    def _fault(self, path):
        fake = self.fake
        with fake._lock:
            fault = next(
                (
                    f
                    for f in fake._faults
                    if f["count"] > 0
                    and not path.startswith("/_fake")
                    and f["method"] in (None, self.command)
                    and (f["path"] is None or path.startswith(f["path"]))
                ),
                None,
            )
            if fault is None:
                return False
            fault["count"] -= 1
            fake._faults = [f for f in fake._faults if f["count"] > 0]
        if fault["kind"] == "hang":
            fake._stopping.wait(fault["seconds"])
            self.close_connection = True
        elif fault["kind"] == "garbage":
            self._send(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        elif fault["kind"] == "throttle":
            wait = fault["retry_after"]
            self._send(
                429,
                {
                    "title": "Request was throttled",
                    "status": 429,
                    "detail": f"Request was throttled. Expected available in {wait} second{'' if wait == 1 else 's'}.",
                },
                headers={"Retry-After": str(wait)},
            )
        else:
            self._send(
                fault["status"],
                {
                    "title": "Internal server error",
                    "status": fault["status"],
                    "detail": "Something went wrong on our end.",
                },
            )
        return True

    def _authorized(self):
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        return scheme in ("Bearer", "Token") and hmac.compare_digest(value.strip(), self.fake.token)

    def _send(self, status, payload, content_type=None, headers=None):
        if isinstance(payload, (dict, list)):
            data = json.dumps(payload).encode()
            content_type = content_type or ("application/problem+json" if status >= 400 else "application/json")
        else:
            data = payload
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    # --- API ---

    def create_prediction(self, body, query):
        errors = self._body_errors(body, ("version", "input", "webhook", "webhook_events_filter", "stream"))
        if errors:
            return self._send(422, validation_problem(errors))
        owner, name, version_id = re.fullmatch(r"(?:([^/]+)/([^:]+):)?(.+)", body["version"]).groups()
        version = self.fake._version(owner, name, version_id)
        if version is None and owner is None and "/" in version_id and version_id in self.fake.official_models:
            version = self.fake._model_versions(*version_id.split("/", 1))[0]
        if version is None:
            return self._send(422, INVALID_VERSION)
        self._start(version, body)

    def create_model_prediction(self, body, query, owner, name):
        if not self.fake._model_versions(owner, name):
            return self._send(404, NOT_FOUND)
        if f"{owner}/{name}" not in self.fake.official_models:
            return self._send(422, INVALID_VERSION)
        errors = self._body_errors(body, ("input", "webhook", "webhook_events_filter", "stream"))
        if errors:
            return self._send(422, validation_problem(errors))
        self._start(self.fake._model_versions(owner, name)[0], body)

    def _body_errors(self, body, allowed):
        if not isinstance(body, dict):
            return [
                {
                    "type": "invalid_type",
                    "field": "",
                    "description": "Invalid type. Expected: object, given: " + _json_type(body),
                }
            ]
        errors = [
            {"type": "required", "field": "", "description": f"{key} is required"}
            for key in ("version", "input")
            if key in allowed and key not in body
        ]
        if "version" in body and not isinstance(body["version"], str):
            errors.append(
                {
                    "type": "invalid_type",
                    "field": "version",
                    "description": f"Invalid type. Expected: string, given: {_json_type(body['version'])}",
                }
            )
        errors += [
            {
                "type": "additional_property_not_allowed",
                "field": "",
                "description": f"Additional property {key} is not allowed",
            }
            for key in body
            if key not in allowed
        ]
        if "input" in body and not isinstance(body["input"], dict):
            errors.append(
                {
                    "type": "invalid_type",
                    "field": "input",
                    "description": f"Invalid type. Expected: object, given: {_json_type(body['input'])}",
                }
            )
        for i, event in enumerate(body.get("webhook_events_filter") or []):
            if event not in WEBHOOK_EVENTS:
                allowed_events = ", ".join(json.dumps(e) for e in WEBHOOK_EVENTS)
                errors.append(
                    {
                        "type": "enum",
                        "field": f"webhook_events_filter.{i}",
                        "description": f"webhook_events_filter.{i} must be one of the following: {allowed_events}",
                    }
                )
        return errors

    def _start(self, version, body):
        schemas = version["openapi_schema"]["components"]["schemas"]
        errors = validate_input(body["input"], schemas["Input"], schemas)
        if errors:
            return self._send(422, validation_problem(errors))
        wait = self._prefer_wait()
        p = self.fake._create(version, body)
        if wait:
            with self.fake._changed:
                self.fake._changed.wait_for(
                    lambda: p.status in TERMINAL or p.output_ready or self.fake._stopping.is_set(), wait
                )
        with self.fake._lock:
            payload = self.fake._json(p)
        done = payload["status"] in TERMINAL or p.output_ready
        self._send(201 if done or not wait else 202, payload, headers={"Location": payload["urls"]["get"]})

    def _prefer_wait(self):
        match = re.fullmatch(r"\s*wait(?:\s*=\s*(\d+))?\s*", self.headers.get("Prefer") or "")
        if not match:
            return 0
        return min(int(match.group(1) or 60), 60) or 60

    def get_prediction(self, body, query, pid):
        p = self.fake.predictions.get(pid)
        if p is None:
            return self._send(404, NOT_FOUND)
        with self.fake._lock:
            self._send(200, self.fake._json(p))

    def cancel_prediction(self, body, query, pid):
        p = self.fake.predictions.get(pid)
        if p is None:
            return self._send(404, NOT_FOUND)
        self.fake._complete(p, "canceled")
        self.get_prediction(None, {}, pid)

    def list_predictions(self, body, query):
        fake, cursor = self.fake, query.get("cursor", "")
        with fake._lock:
            items = sorted(fake.predictions.values(), key=lambda p: p.seq, reverse=True)
            if query.get("source") == "web":
                items = []
            for key, keep in (
                ("created_after", lambda p, t: _iso(p.created_at) >= t),
                ("created_before", lambda p, t: _iso(p.created_at) < t),
            ):
                if key in query:
                    items = [p for p in items if keep(p, query[key].replace("+00:00", "Z"))]
            try:
                kind, _, seq = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition(":")
                int(seq or 0)
            except ValueError:
                kind, seq = "", "0"
            if kind == "lt":
                page = [p for p in items if p.seq < int(seq)][: fake.page_size]
            elif kind == "gt":
                page = [p for p in items if p.seq > int(seq)][-fake.page_size :]
            else:
                page = items[: fake.page_size]
            results = [fake._json(p) for p in page]

        def link(kind, seq):
            token = base64.urlsafe_b64encode(f"{kind}:{seq}".encode()).decode().rstrip("=")
            return f"{fake.api_url}/predictions?" + urllib.parse.urlencode({**query, "cursor": token})

        more_after = page and any(p.seq < page[-1].seq for p in items)
        more_before = page and any(p.seq > page[0].seq for p in items)
        self._send(
            200,
            {
                "next": link("lt", page[-1].seq) if more_after else None,
                "previous": link("gt", page[0].seq) if more_before else None,
                "results": results,
            },
        )

    def get_model(self, body, query, owner, name):
        if f"{owner}/{name}" in self.fake.created_models and not self.fake._model_versions(owner, name):
            return self._send(200, self.fake.created_models[f"{owner}/{name}"])
        if not self.fake._model_versions(owner, name):
            return self._send(404, NOT_FOUND)
        self._send(200, self.fake._model_json(owner, name))

    def list_versions(self, body, query, owner, name):
        versions = self.fake._model_versions(owner, name)
        if not versions:
            return self._send(404, NOT_FOUND)
        self._send(200, {"next": None, "previous": None, "results": [self.fake._version_json(v) for v in versions]})

    def get_version(self, body, query, owner, name, vid):
        version = self.fake._version(owner, name, vid)
        if version is None:
            return self._send(404, NOT_FOUND)
        self._send(200, self.fake._version_json(version))

    # --- trainings (Replicate's trainings API, polled: no webhooks) ---

    def create_model(self, body, query):
        body = body or {}
        missing = [key for key in ("owner", "name", "visibility", "hardware") if not body.get(key)]
        if missing:
            errors = [{"type": "required", "field": "", "description": f"{key} is required"} for key in missing]
            return self._send(422, validation_problem(errors))
        ref = f"{body['owner']}/{body['name']}"
        if ref in self.fake.created_models or self.fake._model_versions(body["owner"], body["name"]):
            return self._send(409, {"title": "Conflict", "status": 409, "detail": f"A model {ref} already exists."})
        model = {
            "url": f"https://replicate.com/{ref}",
            "owner": body["owner"],
            "name": body["name"],
            "description": body.get("description"),
            "visibility": body["visibility"],
            "run_count": 0,
            "latest_version": None,
        }
        self.fake.created_models[ref] = model
        self._send(201, model)

    def create_training(self, body, query, owner, name, vid):
        version = self.fake._version(owner, name, vid)
        if version is None:
            return self._send(404, NOT_FOUND)
        body = body if isinstance(body, dict) else {}
        destination = body.get("destination")
        if not isinstance(destination, str) or destination not in self.fake.created_models:
            return self._send(
                404,
                {"title": "Destination not found", "status": 404, "detail": "The destination model does not exist."},
            )
        if not isinstance(body.get("input"), dict):
            return self._send(
                422, validation_problem([{"type": "required", "field": "", "description": "input is required"}])
            )
        training = self.fake._create_training(version, destination, body["input"])
        self._send(201, self.fake._training_json(training))

    def get_training(self, body, query, tid):
        training = self.fake.trainings.get(tid)
        if training is None:
            return self._send(404, NOT_FOUND)
        self._send(200, self.fake._training_json(training))

    def cancel_training(self, body, query, tid):
        training = self.fake.trainings.get(tid)
        if training is None:
            return self._send(404, NOT_FOUND)
        with self.fake._lock:
            if training["status"] not in TERMINAL:
                training.update(status="canceled", completed_at=_now())
        self.get_training(None, {}, tid)

    def list_trainings(self, body, query):
        with self.fake._lock:
            results = [self.fake._training_json(t) for t in reversed(list(self.fake.trainings.values()))]
        self._send(200, {"next": None, "previous": None, "results": results})

    def get_secret(self, body, query):
        self._send(200, {"key": self.fake.webhook_secret})

    def get_file(self, body, query, token, filename):
        with self.fake._lock:
            entry = self.fake._files.get(token)
            if entry and self.fake.clock() > entry[2]:
                del self.fake._files[token]
                entry = None
        if entry is None:
            return self._send(404, b"Not Found", "text/plain")
        self._send(200, entry[0], entry[1], headers={"Cache-Control": "public, max-age=3600"})

    def control(self, body, query, action):
        args = body or {}
        if action == "script":
            args["nsfw_outputs"] = tuple(args.get("nsfw_outputs", ()))
        getattr(self.fake, action)(**args)
        self._send(200, {"ok": True})


if __name__ == "__main__":  # python -m tests.fakes.replicate_cloud [port]
    import sys

    server = FakeReplicate(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0).start()
    print(json.dumps({"url": server.url, "token": server.token, "webhook_secret": server.webhook_secret}), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()
