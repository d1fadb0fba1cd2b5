"""Deployments: throughput of a pool of 1, 2 and 4 real Cog servers, and a
server killed mid-run.

Starts its own components on PostgreSQL + Redis: gunicorn (the web process,
as the Procfile runs it), a Celery worker with --concurrency threads, Celery
beat (the reconciler every second) and four Cog servers on tests/cog_predictor,
all uploading as the pool's version. A deployment (created through /v1) runs
a predictor that sleeps 1 s (`num_inference_steps=1, step_delay=1`); each
phase posts --count predictions to /v1/deployments/{owner}/{name}/predictions
at once and follows them through /v1 (one list request every 0.5 s) until every one has ended. Throughput is
predictions over the time from the first create to the last completion.

Phases: the pool with 1, 2 and 4 instances (the version's pool is set to the
first N servers between phases), then 4 instances with one SIGKILLed (its
whole process group, no chance to report anything) --kill-after seconds into
the phase: every prediction must still succeed.

Run with the project's venv (~4 min):
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/lightbox_deploy_bench CELERY_BROKER_URL=redis://127.0.0.1:6379/6 \\
    .venv/bin/python bench/deployments.py
"""

import argparse
import json
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

TERMINAL = ("succeeded", "failed", "canceled")
SLEEP_INPUT = {"num_inference_steps": 1, "step_delay": 1.0, "width": 16, "height": 16}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/lightbox_deploy_bench"),
    )
    parser.add_argument("--broker-url", default=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/6"))
    parser.add_argument("--count", type=int, default=60, help="predictions per phase")
    parser.add_argument("--sizes", default="1,2,4", help="pool sizes to measure, in this order (repeats allowed)")
    parser.add_argument("--concurrency", type=int, default=16, help="the Celery worker's threads")
    parser.add_argument("--kill-after", type=float, default=4.0, help="seconds into the kill phase")
    parser.add_argument("--timeout", type=float, default=240, help="seconds a phase may take")
    parser.add_argument("--var-dir", type=Path, default=harness.ROOT / "var" / "bench-deployments")
    return parser.parse_args()


class Bench:
    def __init__(self, args):
        self.args = args
        self.site_port = harness.free_port()
        self.site = f"http://127.0.0.1:{self.site_port}"
        self.env = harness.config_env(
            "postgres", args.var_dir, self.site_port, database_url=args.database_url, broker_url=args.broker_url
        )
        self.env.update(LIGHTBOX_RECONCILE_INTERVAL="1", LIGHTBOX_AVAILABILITY_INTERVAL="5", LIGHTBOX_HTTP_TIMEOUT="3")
        self.log_dir = args.var_dir / "logs"
        self.processes = []
        self.servers = []

    def start(self):
        harness.reset_var_dir(self.args.var_dir)
        harness.create_postgres_if_missing(self.args.database_url)
        harness.reset_postgres(self.args.database_url)
        harness.reset_redis(self.args.broker_url)
        harness.manage(self.env, "migrate", "--noinput", "-v0")
        ports = [harness.free_port() for _ in range(4)]
        self.urls = [f"http://127.0.0.1:{port}" for port in ports]
        # Every server of the pool uploads as the version's (the first URL).
        upload_url = harness.django_step(self.env, "upload-url", "--cog-url", self.urls[0])["upload_url"]
        for index, port in enumerate(ports):
            self.servers.append(harness.cog_server(port, self.env, self.log_dir, upload_url, name=f"cog-{index + 1}"))
        self.processes.append(harness.gunicorn(self.site_port, self.env, self.log_dir))
        self.processes.append(harness.celery_worker(self.env, self.log_dir, concurrency=self.args.concurrency))
        self.processes.append(harness.celery_beat(self.env, self.log_dir))
        self.setup = _step(self.env, "setup", "--urls", ",".join(self.urls))
        self.headers = {"Authorization": f"Bearer {self.setup['token']}"}

    def step(self, name, *args):
        return _step(self.env, name, *args)

    def stop(self):
        for process in self.processes + self.servers:
            process.stop()


def _step(env, name, *args):
    """This file's Django-side steps, in a child process with the bench's env."""
    return harness.django_step(env, "--django-step", name, *args, script=__file__)


def run_phase(bench, size, kill=False):
    import httpx

    bench.step("pool", "--urls", ",".join(bench.urls[:size]))
    meter = harness.CpuMeter()
    with httpx.Client(base_url=bench.site, headers=bench.headers, timeout=30) as client:

        def create(index):
            body = {"input": {"prompt": f"size {size} #{index}", **SLEEP_INPUT}}
            response = client.post("/v1/deployments/bench/pool/predictions", json=body)
            response.raise_for_status()
            return response.json()["id"]

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(create, range(bench.args.count)))
        killed = None
        results = {}
        wanted = set(ids)
        while time.monotonic() - started < bench.args.timeout:
            if kill and killed is None and time.monotonic() - started >= bench.args.kill_after:
                # Mid-run: while it is running a prediction.
                victim = bench.servers[size - 1]
                port = bench.urls[size - 1]
                harness.wait_until(
                    lambda: (harness._get_json(port + "/health-check") or {}).get("status") == "BUSY",
                    timeout=30,
                    interval=0.01,
                    message="the server to kill to be running a prediction",
                )
                os.killpg(victim.process.pid, signal.SIGKILL)
                victim.process.wait()
                killed = victim
            # One list request a round (the phase's predictions are the newest
            # 100), not one GET per prediction: the machine has 2 cores.
            for payload in client.get("/v1/predictions").json()["results"]:
                if payload["id"] in wanted and payload["status"] in TERMINAL:
                    results[payload["id"]] = payload
            if len(results) == len(ids):
                break
            time.sleep(0.5)
    load = meter.summary()
    done = list(results.values())
    first = min(_time(p["created_at"]) for p in done) if done else 0
    last = max(_time(p["completed_at"]) for p in done) if done else 0
    wall = last - first
    statuses = [p["status"] for p in done]
    attempts = bench.step("attempts", "--ids", ",".join(ids))
    return {
        "instances": size,
        "killed": kill,
        "predictions": len(ids),
        "succeeded": statuses.count("succeeded"),
        "failed": statuses.count("failed"),
        "stuck": len(ids) - len(done),
        "errors": sorted({p["error"] for p in done if p["error"]}),
        "wall_s": round(wall, 2),
        "per_s": round(len(done) / wall, 3) if wall else 0,
        "sent_again": sum(1 for n in attempts.values() if n > 1),
        "instances_used": bench.step("spread", "--ids", ",".join(ids))["per_instance"],
        **load,
    }


def _time(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# --- Django-side steps ---------------------------------------------------------


def step_setup(args):
    harness._django()
    from app.models import ApiToken, Deployment
    from app.services import catalog, pools

    user = harness._user("bench")
    _, token = ApiToken.issue(user, name="deployments benchmark")
    urls = args.urls.split(",")
    version = catalog.import_version(urls[0], "local/sleeper")
    pools.set_instances(version, urls)
    catalog.refresh_availability(version, max_age=0)
    if not version.available:
        raise SystemExit(f"version not available: {version.unavailable_reason}")
    Deployment.objects.filter(owner=user).delete()
    print(json.dumps({"token": token, "version": version.id}))


def step_pool(args):
    harness._django()
    from app.models import Deployment, Version
    from app.services import catalog, pools

    urls = args.urls.split(",")
    version = Version.objects.get(model__owner="local", model__name="sleeper")
    pools.set_instances(version, urls)
    for instance in version.instances.all():
        pools.check(instance)
    catalog.refresh_availability(version, max_age=0)
    user = harness._user("bench")
    Deployment.objects.update_or_create(
        owner=user, name="pool", defaults={"version": version, "max_instances": 20, "min_instances": len(urls)}
    )
    print(json.dumps({"instances": len(urls)}))


def step_attempts(args):
    harness._django()
    from app.models import Prediction

    print(
        json.dumps(dict(Prediction.objects.filter(pk__in=args.ids.split(",")).values_list("id", "dispatch_attempts")))
    )


def step_spread(args):
    harness._django()
    from collections import Counter

    from app.models import Prediction

    rows = Prediction.objects.filter(pk__in=args.ids.split(",")).values_list("instance__url", flat=True)
    print(json.dumps({"per_instance": dict(Counter(url or "none" for url in rows))}))


def django_main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--django-step", required=True)
    parser.add_argument("--urls", default="")
    parser.add_argument("--ids", default="")
    args = parser.parse_args()
    {"setup": step_setup, "pool": step_pool, "attempts": step_attempts, "spread": step_spread}[args.django_step](args)


def main():
    args = parse_args()
    harness.check_interpreter()
    harness.stop_children_on_sigterm()
    bench = Bench(args)
    phases = []
    started = time.monotonic()
    try:
        print(f"starting gunicorn, 4 Cog servers, a Celery worker and beat under {args.var_dir} ...", flush=True)
        bench.start()
        for size in [int(s) for s in args.sizes.split(",")]:
            phases.append(run_phase(bench, size))
            print(json.dumps(phases[-1]), flush=True)
        phases.append(run_phase(bench, 4, kill=True))
        print(json.dumps(phases[-1]), flush=True)
    finally:
        bench.stop()
    # Against the 1-instance phases' mean: the machine's load moves between phases
    # (other jobs share it), so --sizes 1,2,4,1,4 interleaves them.
    singles = [p["per_s"] for p in phases if p["instances"] == 1 and not p["killed"]]
    base = sum(singles) / len(singles) if singles else None
    (args.var_dir / "results.json").write_text(
        json.dumps({"elapsed_s": time.monotonic() - started, "phases": phases}, indent=1)
    )
    print()
    print(
        f"Deployments: {args.count} predictions of a 1 s predictor per phase (PostgreSQL + Redis, worker threads {args.concurrency})"
    )
    harness.print_table(
        [
            "instances",
            "server killed",
            "succeeded",
            "failed",
            "stuck",
            "wall s",
            "pred/s",
            "speed-up",
            "sent again",
            "CPU busy",
            "load",
        ],
        [
            (
                p["instances"],
                "yes" if p["killed"] else "no",
                p["succeeded"],
                p["failed"],
                p["stuck"],
                p["wall_s"],
                p["per_s"],
                f"{p['per_s'] / base:.2f}x" if base else "-",
                p["sent_again"],
                f"{p['cpu_busy']:.0%}",
                f"{p['loadavg_start']:.1f}->{p['loadavg_end']:.1f}",
            )
            for p in phases
        ],
    )
    for p in phases:
        if p["errors"]:
            print(f"errors ({p['instances']} instances, killed={p['killed']}): {p['errors']}")
        print(f"spread ({p['instances']} instances, killed={p['killed']}): {p['instances_used']}")


if __name__ == "__main__":
    if "--django-step" in sys.argv:
        django_main()
    else:
        main()
