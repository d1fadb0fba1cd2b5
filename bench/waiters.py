"""Waiting clients versus everyone else: p99 of GET /v1/predictions/{id} and of
the gallery page, alone, then while 200 `Prefer: wait` creates wait for
predictions that do not end, then alone again once the predictions ended and
every wait returned with its result.

It drops and creates the PostgreSQL database, migrates it, creates 2,000
succeeded public predictions (the GETs' ids and the gallery's content) and a
version whose predictions never run (no Celery worker), starts the web server
(--web-server: asgi, as the Procfile runs it, or gthread, the server before)
and measures both endpoints at once, each with a wrk (one thread, --connections
connections, closed loop), for a warm-up and --duration seconds per phase. The
waiting clients are one asyncio httpx client in this process with a connection
per request, each `Prefer: wait=60`; the phase beside them fits in those 60 s.
It also reads the web server's CPU use with no other requests, with and
without the waiters.

Run with the project's venv: .venv/bin/python bench/waiters.py
"""

import argparse
import asyncio
import json
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from api_throughput import wrk


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waiters", type=int, default=200, help="concurrent Prefer: wait creates (default 200)")
    parser.add_argument("--predictions", type=int, default=2000, help="finished predictions to GET (default 2000)")
    parser.add_argument("--connections", type=int, default=2, help="wrk connections per endpoint (default 2)")
    parser.add_argument("--duration", type=int, default=15, help="measured seconds per phase (default 15)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured seconds before each (default 3)")
    parser.add_argument(
        "--idle",
        type=int,
        default=4,
        help="seconds the web server's idle CPU is measured, alone and with the waiters (default 4)",
    )
    parser.add_argument(
        "--create-timeout",
        type=int,
        default=30,
        help="seconds to wait for the waiters' predictions to exist before measuring (default 30)",
    )
    parser.add_argument(
        "--web-server",
        choices=harness.WEB_SERVERS,
        default="asgi",
        help="asgi: the Procfile's uvicorn workers; gthread: gunicorn's threads (default asgi)",
    )
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    parser.add_argument("--web-threads", type=int, default=8, help="threads per worker (default 8)")
    parser.add_argument(
        "--database-url",
        default=harness.DEFAULT_DATABASE_URL,
        help="PostgreSQL database, dropped and recreated (default %(default)s)",
    )
    parser.add_argument(
        "--broker-url", default=harness.DEFAULT_BROKER_URL, help="Redis database, flushed (default %(default)s)"
    )
    parser.add_argument(
        "--var-dir",
        type=Path,
        default=harness.DEFAULT_VAR_DIR,
        help="LIGHTBOX_VAR_DIR parent; logs and results go here too (default %(default)s)",
    )
    return parser.parse_args()


class Waiters:
    """`count` concurrent waiting creates on an event loop of their own thread."""

    def __init__(self, site, token, version, count):
        self.site, self.token, self.version, self.count = site, token, version, count
        self.answered = 0  # response headers received (the ASGI server sends them at once)
        self.results = []  # (status code, prediction status, seconds) once each body came
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self):
        self.thread.start()
        return self

    async def _run(self):
        limits = httpx.Limits(max_connections=self.count + 10, max_keepalive_connections=0)
        headers = {"Authorization": f"Bearer {self.token}", "Prefer": "wait=60"}
        async with httpx.AsyncClient(base_url=self.site, headers=headers, limits=limits, timeout=120) as client:
            await asyncio.gather(*(self._one(client, i) for i in range(self.count)))

    async def _one(self, client, i):
        started = time.monotonic()
        body = {"version": self.version, "input": {"prompt": f"waiter {i}"}}
        try:
            async with client.stream("POST", "/v1/predictions", json=body) as response:
                self.answered += 1
                payload = json.loads(await response.aread())
                self.results.append((response.status_code, payload.get("status"), time.monotonic() - started))
        except (httpx.HTTPError, ValueError) as exc:
            self.results.append((0, type(exc).__name__, time.monotonic() - started))


def created(database_url):
    """How many of the waiters' predictions exist (a request still queued for
    a thread has not made its own yet)."""
    import psycopg

    with psycopg.connect(database_url) as connection:
        return connection.execute(
            "SELECT count(*) FROM app_prediction p JOIN auth_user u ON u.id = p.owner_id "
            "WHERE u.username = 'bench-waiters'"
        ).fetchone()[0]


def idle_cpu(web, seconds):
    """The web server's CPU use, in % of one core, with no other requests."""
    before = web.cpu_seconds()
    time.sleep(seconds)
    return (web.cpu_seconds() - before) / seconds * 100


def measure(site, token, paths, connections, warmup, duration):
    """Both endpoints at once (a wrk each), so that a phase fits in the
    waiters' 60 s with enough samples for a p99."""

    def one(paths_file):
        wrk(site, token, paths_file, connections, warmup)
        summary = wrk(site, token, paths_file, connections, duration)
        seconds = summary["duration_us"] / 1e6
        return {
            "requests": summary["requests"],
            "rps": summary["requests"] / seconds,
            "p50_ms": summary["p50_us"] / 1000,
            "p99_ms": summary["p99_us"] / 1000,
            "max_ms": summary["max_us"] / 1000,
            "errors": sum(v for k, v in summary.items() if k.startswith("errors_")),
        }

    meter = harness.CpuMeter()
    with ThreadPoolExecutor(len(paths)) as pool:
        futures = {endpoint: pool.submit(one, paths_file) for endpoint, paths_file in paths.items()}
        results = {endpoint: future.result() for endpoint, future in futures.items()}
    load = meter.summary()
    return {endpoint: {**r, **load} for endpoint, r in results.items()}


def _p99s(phase):
    return ", ".join(f"{endpoint} {r['p99_ms']:.1f} ms" for endpoint, r in phase.items())


def main():
    args = parse_args()
    harness.check_interpreter()
    harness.stop_children_on_sigterm()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get update && apt-get install -y wrk")
    var_dir = args.var_dir.resolve() / "waiters"
    log_dir = var_dir / "logs"
    harness.reset_var_dir(var_dir)
    harness.reset_postgres(args.database_url)
    harness.reset_redis(args.broker_url)
    port = harness.free_port()
    env = harness.config_env("postgres", var_dir, port, args.database_url, args.broker_url)
    site = env["SITE_URL"]

    print(f"migrating, creating {args.predictions} predictions ...", flush=True)
    harness.manage(env, "migrate", "--noinput")
    ids_file = var_dir / "ids.txt"
    seed = harness.django_step(
        env,
        "seed",
        "--count",
        str(args.predictions),
        "--ids-file",
        str(ids_file),
        "--cursors-file",
        str(var_dir / "cursors.txt"),
    )
    waiting = harness.django_step(env, "setup-waiters")
    paths = {"get": var_dir / "paths-get.txt", "gallery": var_dir / "paths-gallery.txt"}
    paths["get"].write_text("".join(f"/v1/predictions/{i}\n" for i in ids_file.read_text().split()))
    paths["gallery"].write_text("/gallery\n")

    web = harness.gunicorn(port, env, log_dir, args.web_workers, args.web_threads, server=args.web_server)
    phases, idle = {}, {"alone": idle_cpu(web, args.idle)}
    try:
        phases["alone"] = measure(site, seed["token"], paths, args.connections, args.warmup, args.duration)
        print(f"  alone: p99 {_p99s(phases['alone'])}", flush=True)
        waiters = Waiters(site, waiting["token"], waiting["version"], args.waiters).start()
        started = time.monotonic()
        deadline = started + args.create_timeout
        while created(args.database_url) < args.waiters and time.monotonic() < deadline:
            time.sleep(0.2)
        print(
            f"  {created(args.database_url)} of {args.waiters} waiting predictions created in "
            f"{time.monotonic() - started:.1f} s; measuring alongside them",
            flush=True,
        )
        phases["waiters"] = measure(site, seed["token"], paths, args.connections, args.warmup, args.duration)
        print(f"  with waiters: p99 {_p99s(phases['waiters'])}", flush=True)
        idle["waiters"] = idle_cpu(web, args.idle)
        still_waiting = args.waiters - len(waiters.results)
        ended = harness.django_step(env, "end-waiters")["ended"]
        ending = time.monotonic()
        waiters.thread.join(15)
        for _ in range(5):
            if not waiters.thread.is_alive():
                break
            # Requests that got a thread only now (gthread) made their predictions since.
            ended += harness.django_step(env, "end-waiters")["ended"]
            waiters.thread.join(15)
        wake_s = time.monotonic() - ending
        phases["after"] = measure(site, seed["token"], paths, args.connections, args.warmup, args.duration)
        print(f"  alone again: p99 {_p99s(phases['after'])}", flush=True)
    finally:
        web.stop()
    results = {
        "phases": phases,
        "idle_web_cpu_percent": idle,
        "waiters": {
            "count": args.waiters,
            "waiting_when_ended": still_waiting,
            "ended": ended,
            "all_returned_s": wake_s,
            "statuses": sorted({f"{c} {s}" for c, s, _ in waiters.results}),
        },
    }
    (var_dir / "results.json").write_text(json.dumps(results, indent=1))

    print()
    print(
        f"Waiters: {args.waiters} x Prefer: wait on gunicorn {args.web_server} {args.web_workers} workers x "
        f"{args.web_threads} threads; wrk 1 thread x {args.connections} connections, {args.duration}s per run"
    )
    rows = []
    for endpoint in paths:
        alone, busy, after = (phases[phase][endpoint] for phase in ("alone", "waiters", "after"))
        answered = busy["requests"] > 0  # wrk counts only the requests answered within the run
        baseline = (alone["p99_ms"] + after["p99_ms"]) / 2
        rows.append(
            (
                endpoint,
                f"{alone['rps']:.0f} / {alone['p99_ms']:.1f}",
                f"{busy['rps']:.0f} / {busy['p99_ms']:.1f}" if answered else f"none in {args.duration} s",
                f"{after['rps']:.0f} / {after['p99_ms']:.1f}",
                busy["errors"],
                f"{busy['p99_ms'] / baseline:.2f}x" if answered else "-",
                f"{alone['loadavg_start']:.1f}->{after['loadavg_end']:.1f}",
            )
        )
    harness.print_table(
        ["endpoint", "alone req/s / p99 ms", "with waiters", "alone again", "errors", "p99 ratio", "load"], rows
    )
    print("(p99 ratio: with waiters / the mean of the two alone)")
    w = results["waiters"]
    print(
        f"web server's CPU with no other requests: {idle['alone']:.1f}% of a core alone, "
        f"{idle['waiters']:.1f}% with the waiters"
    )
    print(
        f"waiters still waiting when their predictions were ended: {w['waiting_when_ended']} of {w['count']}; "
        f"all {len(waiters.results)} returned within {wake_s:.1f} s after the last was ended; "
        f"answers: {', '.join(w['statuses'])}"
    )


if __name__ == "__main__":
    main()
