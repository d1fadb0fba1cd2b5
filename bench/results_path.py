"""The results path under client load (issue 11, item 1): 50 predictions on
real Cog servers while 200 clients hold `Prefer: wait` requests and others
hammer the API; does every prediction succeed, and how long do Cog's webhooks
and uploads wait?

Starts its own components, as the Procfile runs them: gunicorn with
lightbox.webserver.Worker (--web-workers x --web-threads), a Celery worker
(threads, --worker-concurrency), Celery beat (the reconciler), --cog-servers
real Cog servers on tests/cog_predictor with --upload-url pointing at the web,
and a stand-in model server that accepts predictions and never finishes them
(the waiting clients' predictions). On the PostgreSQL database of
--database-url (dropped and recreated) and the Redis broker of --broker-url
(not flushed: give it a DB of its own).

The load, all at once:
  - --predictions predictions through /v1 (0.5-2 s each: 4 steps of a random
    delay), a third with `Prefer: wait=60`, the others followed by GET every
    0.5 s until terminal, or counted stuck after --stuck-after seconds;
  - --waiters clients each holding a `Prefer: wait=60` create on the stand-in's
    version, made again as soon as one returns;
  - --hammer clients in a closed loop of GETs: a random page of another user's
    2,000 predictions (100 per page) or one of them;
  - a probe every 0.2 s on the results path itself: a Cog webhook for an unknown
    prediction (answered 410 after a database lookup) and an output upload (201).

It prints succeeded / failed / stuck / run twice / client errors, the probes'
latency (the results path's own wait) and the clients' GET latency.

  DATABASE_URL=... .venv/bin/python bench/results_path.py
  mkdir -p var/base && git archive 2eadf98 | tar -x -C var/base && cp bench/results_path.py var/base/bench/
  .venv/bin/python var/base/bench/results_path.py      # the code before
"""

import argparse
import asyncio
import io
import json
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

TERMINAL = ("succeeded", "failed", "canceled")
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/lightbox_results_bench"  # dropped and recreated


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=int, default=50, help="real predictions (default 50)")
    parser.add_argument("--waiters", type=int, default=200, help="clients holding Prefer: wait (default 200)")
    parser.add_argument("--hammer", type=int, default=16, help="clients looping GETs (default 16)")
    parser.add_argument("--cog-servers", type=int, default=2, help="real Cog servers, one slot each (default 2)")
    parser.add_argument("--min-seconds", type=float, default=0.5, help="shortest prediction (default 0.5)")
    parser.add_argument("--max-seconds", type=float, default=2.0, help="longest prediction (default 2)")
    parser.add_argument("--stuck-after", type=float, default=180, help="seconds before a prediction is stuck")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=8)
    parser.add_argument("--worker-concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--broker-url", default=os.environ.get("CELERY_BROKER_URL", harness.DEFAULT_BROKER_URL))
    parser.add_argument("--var-dir", type=Path, default=harness.DEFAULT_VAR_DIR / "results-path")
    parser.add_argument("--django-step", help=argparse.SUPPRESS)
    parser.add_argument("--cog-url", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--idle-url", help=argparse.SUPPRESS)
    return parser.parse_args()


# --- the stand-in model server of the waiting clients' predictions ---------------------


class NeverFinishes(BaseHTTPRequestHandler):
    """Cog's answers, for predictions that never end: a PUT is accepted (and
    answered as running when asked again), nothing is ever sent back."""

    def do_GET(self):
        self._json(200, {"status": "READY"})

    def do_PUT(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._json(202, {"id": self.path.rsplit("/", 1)[-1], "status": "processing"})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._json(200, {})

    def _json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


# --- the load ------------------------------------------------------------------------


class Waiters:
    """`count` clients each holding a `Prefer: wait=60` create, again and again, until stopped."""

    def __init__(self, site, token, version, count):
        self.site, self.token, self.version, self.count = site, token, version, count
        self.statuses = {}
        self.stopping = False
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()

    async def _run(self):
        limits = httpx.Limits(max_connections=self.count + 10, max_keepalive_connections=self.count)
        headers = {"Authorization": f"Bearer {self.token}", "Prefer": "wait=60"}
        async with httpx.AsyncClient(base_url=self.site, headers=headers, limits=limits, timeout=120) as client:
            await asyncio.gather(*(self._one(client, i) for i in range(self.count)))

    async def _one(self, client, i):
        n = 0
        while not self.stopping:
            n += 1
            try:
                response = await client.post(
                    "/v1/predictions", json={"version": self.version, "input": {"prompt": f"waiter {i}.{n}"}}
                )
                outcome = str(response.status_code)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
                await asyncio.sleep(1)
            self.statuses[outcome] = self.statuses.get(outcome, 0) + 1


class Hammer:
    """`count` clients in a closed loop of GETs as another user."""

    def __init__(self, site, token, ids, cursors, count):
        self.latencies, self.errors, self.stopping = [], {}, False
        self.pool = ThreadPoolExecutor(count)
        self.futures = [self.pool.submit(self._loop, site, token, ids, cursors, i) for i in range(count)]

    def _loop(self, site, token, ids, cursors, i):
        rng = random.Random(i)
        with httpx.Client(base_url=site, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
            while not self.stopping:
                path = (
                    f"/v1/predictions?cursor={rng.choice(cursors)}"
                    if rng.random() < 0.5
                    else f"/v1/predictions/{rng.choice(ids)}"
                )
                started = time.monotonic()
                try:
                    status = client.get(path).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                if status == 200:
                    self.latencies.append(time.monotonic() - started)
                else:
                    self.errors[str(status)] = self.errors.get(str(status), 0) + 1

    def stop(self):
        self.stopping = True
        self.pool.shutdown(wait=True)


class Probe:
    """The results path's own latency: a Cog webhook and an output upload every 0.2 s."""

    def __init__(self, webhook_url, upload_url):
        self.webhook, self.upload, self.errors, self.stopping = [], [], {}, False
        self.thread = threading.Thread(target=self._loop, args=[webhook_url, upload_url], daemon=True)
        self.thread.start()

    def _loop(self, webhook_url, upload_url):
        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), "teal").save(buffer, "PNG")
        png = buffer.getvalue()
        body = {"id": "probe", "status": "processing", "logs": "", "output": None}
        with httpx.Client(timeout=120) as client:
            while not self.stopping:
                for latencies, send, expected in (
                    (self.webhook, lambda: client.post(webhook_url, json=body), 410),
                    (
                        self.upload,
                        lambda: client.put(upload_url, content=png, headers={"X-Prediction-Id": "probe"}),
                        201,
                    ),
                ):
                    started = time.monotonic()
                    try:
                        status = send().status_code
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    latencies.append(time.monotonic() - started)
                    if status != expected:
                        self.errors[str(status)] = self.errors.get(str(status), 0) + 1
                time.sleep(0.2)


def run_prediction(site, token, version, seconds, wait, stuck_after):
    """Create one prediction and follow it to its end: (id, client outcome)."""
    headers = {"Authorization": f"Bearer {token}"}
    if wait:
        headers["Prefer"] = "wait=60"
    body = {"version": version, "input": {"prompt": f"results {random.random()}", "step_delay": seconds / 4}}
    with httpx.Client(base_url=site, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
        try:
            response = client.post("/v1/predictions", json=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, type(exc).__name__
        if response.status_code != 201:
            return None, str(response.status_code)
        prediction_id = response.json()["id"]
        deadline = time.monotonic() + stuck_after
        while time.monotonic() < deadline:
            try:
                if client.get(f"/v1/predictions/{prediction_id}").json()["status"] in TERMINAL:
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
    return prediction_id, "201"


def _ms(values, q):
    return f"{harness.percentile(values, q) * 1000:.0f}" if values else "-"


def main():
    args = parse_args()
    if args.django_step:
        return STEPS[args.django_step](args)
    harness.check_interpreter()
    harness.stop_children_on_sigterm()
    var_dir = args.var_dir.resolve()
    log_dir = var_dir / "logs"
    harness.reset_var_dir(var_dir)
    harness.reset_postgres(args.database_url)
    port = harness.free_port()
    env = harness.config_env("postgres", var_dir, port, args.database_url, args.broker_url)
    site = env["SITE_URL"]
    rng = random.Random(args.seed)
    stand_in = ThreadingHTTPServer(("127.0.0.1", harness.free_port()), NeverFinishes)
    threading.Thread(target=stand_in.serve_forever, daemon=True).start()
    idle_url = f"http://127.0.0.1:{stand_in.server_address[1]}"
    processes = []
    try:
        print("migrating, seeding 2,000 predictions for the GETs ...", flush=True)
        harness.manage(env, "migrate", "--noinput")
        seed = harness.django_step(
            env,
            "seed",
            "--count",
            "2000",
            "--ids-file",
            str(var_dir / "ids.txt"),
            "--cursors-file",
            str(var_dir / "cursors.txt"),
        )
        ids = (var_dir / "ids.txt").read_text().split()
        cursors = [c for c in (var_dir / "cursors.txt").read_text().split("\n") if c]
        processes.append(harness.gunicorn(port, env, log_dir, args.web_workers, args.web_threads))
        cog_urls = []
        for i in range(args.cog_servers):
            cog_port = harness.free_port()
            cog_url = f"http://127.0.0.1:{cog_port}"
            upload_url = harness.django_step(env, "upload-url", "--cog-url", cog_url)["upload_url"]
            processes.append(harness.cog_server(cog_port, env, log_dir, upload_url=upload_url, name=f"cog-{i}"))
            cog_urls.append(cog_url)
        setup = _step(env, "setup", *(a for url in cog_urls for a in ("--cog-url", url)), "--idle-url", idle_url)
        processes.append(harness.celery_worker(env, log_dir, concurrency=args.worker_concurrency))
        processes.append(harness.celery_beat(env, log_dir))

        waiters = Waiters(site, setup["token"], setup["idle_version"], args.waiters)
        hammer = Hammer(site, seed["token"], ids, cursors, args.hammer)
        time.sleep(5)  # the waiters are in, the GETs going
        probe = Probe(setup["probe_webhook"], setup["probe_upload"])
        meter = harness.CpuMeter()
        print(
            f"{args.predictions} predictions beside {args.waiters} waiting clients and {args.hammer} GET loops ...",
            flush=True,
        )
        started = time.monotonic()
        with ThreadPoolExecutor(args.predictions) as pool:
            futures = [
                pool.submit(
                    run_prediction,
                    site,
                    setup["token"],
                    setup["versions"][i % len(setup["versions"])],
                    rng.uniform(args.min_seconds, args.max_seconds),
                    i % 3 == 0,
                    args.stuck_after,
                )
                for i in range(args.predictions)
            ]
            created = [future.result() for future in futures]
        elapsed = time.monotonic() - started
        load = meter.summary()
        probe.stopping = True
        hammer.stop()
        waiters.stopping = True
        probe.thread.join(30)
        report = _step(env, "report", stdin=json.dumps([pid for pid, _ in created if pid]))
    finally:
        for process in reversed(processes):
            process.stop()
        stand_in.shutdown()

    outcomes = report["predictions"]
    statuses = [o["status"] for o in outcomes.values()]
    client_errors = [outcome for pid, outcome in created if pid is None]
    results = {
        "sent": args.predictions,
        "succeeded": statuses.count("succeeded"),
        "failed": statuses.count("failed"),
        "stuck": sum(1 for s in statuses if s not in TERMINAL),
        "run_twice": sum(1 for o in outcomes.values() if o["dispatch_attempts"] > 1),
        "client_errors": client_errors,
        "errors": sorted({o["error"] for o in outcomes.values() if o["error"]}),
        "seconds": elapsed,
        "webhook_ms": {q: _ms(probe.webhook, q) for q in (50, 99, 100)},
        "upload_ms": {q: _ms(probe.upload, q) for q in (50, 99, 100)},
        "probe_errors": probe.errors,
        "probes": len(probe.webhook),
        "get_ms": {q: _ms(hammer.latencies, q) for q in (50, 99, 100)},
        "gets": len(hammer.latencies),
        "get_errors": hammer.errors,
        "waiters": waiters.statuses,
        "load": load,
    }
    (var_dir / "results.json").write_text(json.dumps(results, indent=1))
    print()
    harness.print_table(
        ["sent", "succeeded", "failed", "stuck", "run twice", "client errors", "seconds"],
        [
            (
                args.predictions,
                results["succeeded"],
                results["failed"],
                results["stuck"],
                results["run_twice"],
                len(client_errors),
                f"{elapsed:.1f}",
            )
        ],
    )
    print()
    harness.print_table(
        ["path", "requests", "p50 ms", "p99 ms", "max ms", "errors"],
        [
            ("Cog webhook (probe)", len(probe.webhook), *results["webhook_ms"].values(), "-"),
            ("Cog upload (probe)", len(probe.upload), *results["upload_ms"].values(), "-"),
            ("client GETs", len(hammer.latencies), *results["get_ms"].values(), sum(hammer.errors.values())),
        ],
    )
    print(f"errors: {results['errors'] or 'none'}; client errors: {client_errors or 'none'}")
    print(f"waiting clients' answers: {waiters.statuses}; probe errors: {probe.errors or 'none'}")
    print(
        f"web {args.web_workers} x {args.web_threads} threads; machine CPU busy {load['cpu_busy']:.0%}, "
        f"load {load['loadavg_start']:.1f}->{load['loadavg_end']:.1f}"
    )


# --- Django-side steps (this script run again in the configuration's environment) -------


def _step(env, name, *args, stdin=None):
    import subprocess

    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--django-step", name, *args],
        cwd=env["LIGHTBOX_VAR_DIR"],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"step {name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def step_setup(args):
    """The bench user's token, a version per Cog server, the waiting clients'
    version on the stand-in, and the probes' URLs."""
    harness._django()
    from datetime import timedelta

    from django.utils import timezone

    from app.models import ApiToken, Prediction
    from app.services import catalog, storage
    from app.services.backends import cog

    user = harness._user("bench-results")
    _, token = ApiToken.issue(user, name="results path benchmark")
    versions = [catalog.import_version(url, f"local/results-{i}").id for i, url in enumerate(args.cog_url)]
    schema = json.loads((harness.COG_PREDICTOR_DIR / ".cog" / "openapi_schema.json").read_text())
    idle = catalog.add_version("local", "results-waiting", "cog", args.idle_url, schema, "0.23.1")
    idle.set_availability(True)
    type(idle).objects.filter(pk=idle.pk).update(checked_at=timezone.now() + timedelta(days=1))
    print(
        json.dumps(
            {
                "token": token,
                "versions": versions,
                "idle_version": idle.pk,
                # A webhook for a prediction that does not exist: answered 410 after a lookup.
                "probe_webhook": cog.webhook_url(Prediction(id="probe")),
                "probe_upload": storage.upload_url(args.idle_url) + "probe.png",
            }
        )
    )


def step_report(args):
    """The predictions' outcomes (ids on stdin); the probes' uploads deleted."""
    harness._django()
    from app.models import Prediction, Upload

    ids = json.loads(sys.stdin.read())
    rows = Prediction.objects.filter(pk__in=ids).values("id", "status", "error", "dispatch_attempts")
    for upload in Upload.objects.filter(remote_prediction_id="probe"):
        upload.file.delete(save=False)
        upload.delete()
    print(json.dumps({"predictions": {row["id"]: row for row in rows}}))


STEPS = {"setup": step_setup, "report": step_report}


if __name__ == "__main__":
    main()
