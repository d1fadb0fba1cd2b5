"""Proof under faults: the faults of tests/engine, each run many times over.

Starts its own components: gunicorn (the web process, which Cog webhooks and
uploads reach), a Celery worker, Celery beat (the reconciler, every
LIGHTBOX_RECONCILE_INTERVAL seconds) and a real Cog server on tests/cog_predictor
with --upload-url pointing at the web, on the database of DATABASE_URL (SQLite
under the var dir when unset) and the broker of CELERY_BROKER_URL (the
filesystem transport when unset). Each prediction is created through /v1 and
followed there until it is terminal, or counted as stuck after --stuck-after
seconds. Faults (each run --runs times):

  worker-sigkill  SIGKILL the worker at a random moment of a prediction: half the
                  runs in its first 50 ms (before or during the hand-off), half
                  in the next 0.45 s (after it); then start a new worker, as a
                  supervisor would
  cog-restart     SIGTERM the Cog server once the prediction's first step has run,
                  then start it again on the same port
  cog-sigkill     the same with SIGKILL: the server cannot report anything
  500, garbage,   a stand-in Cog server (tests/engine/broken_cog.py) answering
  timeout         500, something that is not JSON, or nothing at all
  409             the real Cog server busy with another prediction: "At capacity"
                  until its only slot is free
  webhook-lost    a proxy in front of the Cog server acknowledges the prediction's
                  completed webhook and never passes it on

After each fault, tests/stored_files.py checks the predictions' files (one
harness step): an output lost (an Output row without its file or thumbnail, or
fewer Output rows than the model returned outputs) or orphaned (a file under
outputs/ that no Output row names, any file left under uploads/, an Upload row
of the prediction).

Run with the project's venv:
  DATABASE_URL=postgres://... CELERY_BROKER_URL=redis://.../5 .venv/bin/python bench/faults.py
"""

import argparse
import json
import os
import random
import re
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import harness  # noqa: E402

from tests.engine.broken_cog import BrokenCogServer, WebhookDroppingProxy  # noqa: E402

FAULTS = ["worker-sigkill", "cog-restart", "cog-sigkill", "500", "garbage", "timeout", "409", "webhook-lost"]
TERMINAL = ("succeeded", "failed", "canceled")
# The app's own words for a prediction that could not run (app/services/backends/cog.py,
# tasks/predictions.py): each says what went wrong and where.
CLEAR_ERROR = re.compile(r"^(The model server |Could not store the outputs)")
# Faults whose runs do not touch a shared process run several at once: all
# of them when the stand-in answers at once, --parallel when each try holds a
# worker thread (timeout) or the runs take turns on the Cog server's one slot.
PARALLEL = {"500": "all", "garbage": "all", "timeout": "some", "webhook-lost": "some"}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="runs of each fault (default 20)")
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated subset of: " + ", ".join(FAULTS))
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", ""),
        help="PostgreSQL database, created if missing, migrated, kept (default $DATABASE_URL; "
        "SQLite under the var dir when empty)",
    )
    parser.add_argument(
        "--broker-url",
        default=os.environ.get("CELERY_BROKER_URL", ""),
        help="Redis DB, flushed first (default $CELERY_BROKER_URL; the filesystem transport "
        "under the var dir when empty)",
    )
    parser.add_argument(
        "--var-dir",
        type=Path,
        default=harness.DEFAULT_VAR_DIR / "faults",
        help="LIGHTBOX_VAR_DIR (media, logs, results.json), emptied first (default %(default)s)",
    )
    parser.add_argument(
        "--parallel", type=int, default=3, help="runs in flight at once for the faults that allow it (default 3)"
    )
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=4,
        help="threads of the Celery worker (default 4: a hanging server holds one per try)",
    )
    parser.add_argument(
        "--dispatch-deadline",
        type=float,
        default=7,
        help="LIGHTBOX_DISPATCH_DEADLINE, seconds of silence before the reconciler asks again; "
        "keep it above the HTTP timeout plus the longest retry backoff (4 s) (default 7)",
    )
    parser.add_argument("--http-timeout", type=float, default=2, help="LIGHTBOX_HTTP_TIMEOUT (default 2)")
    parser.add_argument(
        "--reconcile-interval",
        type=float,
        default=1,
        help="LIGHTBOX_RECONCILE_INTERVAL, how often beat runs the reconciler (default 1)",
    )
    parser.add_argument(
        "--stuck-after",
        type=float,
        default=120,
        help="seconds after which a prediction not terminal counts as stuck (default 120)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed of the kill moments (default 1)")
    args = parser.parse_args()
    args.faults = harness.parse_choices(parser, args.faults, FAULTS)
    return args


class Bench:
    """The running components and the client; the faults act on them."""

    def __init__(self, args):
        import httpx

        self.args = args
        self.rng = random.Random(args.seed)
        self.var_dir = args.var_dir
        self.log_dir = self.var_dir / "logs"
        self.web_port, self.cog_port = harness.free_port(), harness.free_port()
        self.env = harness.config_env("embedded", self.var_dir, self.web_port)
        if args.database_url:
            self.env["DATABASE_URL"] = args.database_url
        if args.broker_url:
            self.env["CELERY_BROKER_URL"] = args.broker_url
        self.env.update(
            LIGHTBOX_DISPATCH_DEADLINE=str(args.dispatch_deadline),
            LIGHTBOX_HTTP_TIMEOUT=str(args.http_timeout),
            LIGHTBOX_RECONCILE_INTERVAL=str(args.reconcile_interval),
            # Hundreds of predictions in minutes, all by one user.
            LIGHTBOX_RATE_LIMIT_PER_MINUTE="none",
            LIGHTBOX_DAILY_QUOTA="none",
            LIGHTBOX_MAX_CONCURRENT="none",
        )
        self.processes = {}
        self.stand_ins = []
        self.restarts = 0
        self.http = httpx.Client(base_url=self.env["SITE_URL"], timeout=30)

    # --- components ---

    def start(self):
        harness.reset_var_dir(self.var_dir)
        if self.args.database_url:
            harness.create_postgres_if_missing(self.args.database_url)
        if self.args.broker_url.startswith("redis://"):
            harness.reset_redis(self.args.broker_url)
        harness.manage(self.env, "migrate", "--noinput")
        self.processes["web"] = harness.gunicorn(self.web_port, self.env, self.log_dir)
        self.cog_url = f"http://127.0.0.1:{self.cog_port}"
        self.upload_url = harness.django_step(self.env, "upload-url", "--cog-url", self.cog_url)["upload_url"]
        self.start_cog()
        self.start_worker()
        self.processes["beat"] = harness.celery_beat(self.env, self.log_dir)
        stand_ins = {
            mode: BrokenCogServer(mode if mode != "timeout" else "hang").start()
            for mode in ("500", "garbage", "timeout")
        }
        # The proxy that loses webhooks fronts a Cog server of its own: an upload
        # token names the one location its server's version is imported from.
        lossy_port = harness.free_port()
        stand_ins["lossy"] = WebhookDroppingProxy(f"http://127.0.0.1:{lossy_port}", drop=1).start()
        lossy_upload_url = harness.django_step(self.env, "upload-url", "--cog-url", stand_ins["lossy"].url)[
            "upload_url"
        ]
        self.processes["cog-lossy"] = harness.cog_server(
            lossy_port, self.env, self.log_dir, upload_url=lossy_upload_url, name="cog-lossy"
        )
        self.stand_ins = list(stand_ins.values())
        setup = harness.django_step(
            self.env,
            "setup-faults",
            "--cog-url",
            self.cog_url,
            *(arg for name, server in stand_ins.items() for arg in ("--version", f"{name}={server.url}")),
        )
        self.versions = setup["versions"]
        self.http.headers["Authorization"] = f"Bearer {setup['token']}"

    def start_cog(self):
        self.restarts += 1
        self.processes["cog"] = harness.cog_server(
            self.cog_port, self.env, self.log_dir, upload_url=self.upload_url, name=f"cog-{self.restarts}"
        )

    def start_worker(self):
        self.restarts += 1
        self.processes["worker"] = harness.celery_worker(
            self.env, self.log_dir, concurrency=self.args.worker_concurrency, name=f"worker-{self.restarts}"
        )

    def stop(self):
        for server in self.stand_ins:
            server.stop()
        for process in reversed(list(self.processes.values())):
            process.stop()

    # --- predictions, through /v1 ---

    def create(self, version, prompt, **extra):
        response = self.http.post(
            "/v1/predictions", json={"version": self.versions[version], "input": {"prompt": prompt, **extra}}
        )
        if response.status_code != 201:
            raise RuntimeError(f"creating a prediction answered {response.status_code}: {response.text[:500]}")
        return response.json()["id"]

    def get(self, prediction_id):
        return self.http.get(f"/v1/predictions/{prediction_id}").json()

    def wait(self, prediction_id, until=lambda body: body["status"] in TERMINAL):
        """The prediction once `until` holds; or as it is after --stuck-after seconds."""
        deadline = time.monotonic() + self.args.stuck_after
        while True:
            body = self.get(prediction_id)
            if until(body) or time.monotonic() > deadline:
                return body
            time.sleep(0.1)


# --- the faults: each starts a prediction, does its harm, returns the ids to follow ---


def worker_sigkill(bench, i):
    prediction_id = bench.create("cog", f"worker killed {i}", num_inference_steps=6, step_delay=0.2)
    time.sleep(bench.rng.uniform(0, 0.05) if i % 2 else bench.rng.uniform(0.05, 0.5))
    bench.processes["worker"].kill()
    bench.start_worker()
    return [prediction_id]


def _cog_restart(bench, i, kill):
    prediction_id = bench.create("cog", f"server restarted {i}", num_inference_steps=6, step_delay=0.3)
    bench.wait(prediction_id, until=lambda body: "step 1/6" in (body["logs"] or "") or body["status"] in TERMINAL)
    if kill:
        bench.processes["cog"].kill()
    else:
        bench.processes["cog"].stop()  # SIGTERM, as a supervisor restarting it sends
    bench.start_cog()
    return [prediction_id]


def cog_restart(bench, i):
    return _cog_restart(bench, i, kill=False)


def cog_sigkill(bench, i):
    return _cog_restart(bench, i, kill=True)


def broken(mode):
    def run(bench, i):
        return [bench.create(mode, f"{mode} {i}")]

    return run


def busy(bench, i):
    """Not counted: the prediction that holds the slot. Counted: the one after it."""
    hog = bench.create("cog", f"holding the slot {i}", num_inference_steps=4, step_delay=0.25)
    bench.wait(hog, until=lambda body: body["status"] != "starting")
    return [bench.create("cog", f"waiting for the slot {i}"), hog]


def webhook_lost(bench, i):
    return [bench.create("lossy", f"webhook lost {i}", num_outputs=2)]


RUNS = {
    "worker-sigkill": worker_sigkill,
    "cog-restart": cog_restart,
    "cog-sigkill": cog_sigkill,
    "500": broken("500"),
    "garbage": broken("garbage"),
    "timeout": broken("timeout"),
    "409": busy,
    "webhook-lost": webhook_lost,
}


def run_fault(bench, fault, before):
    """Run `fault` --runs times; return its results and the files in storage after it."""
    results, followed = [], []

    def one(i):
        ids = RUNS[fault](bench, i)
        bodies = [bench.wait(prediction_id) for prediction_id in ids]
        results.append(bodies[0])
        followed.extend(ids)

    parallel = {"all": bench.args.runs, "some": bench.args.parallel}.get(PARALLEL.get(fault), 1)
    with ThreadPoolExecutor(parallel) as pool:
        for future in [pool.submit(one, i) for i in range(bench.args.runs)]:
            future.result()
    for process in bench.processes.values():
        process.check_alive()
    audit = harness.django_step(bench.env, "audit", stdin=json.dumps({"ids": followed, "before": sorted(before)}))
    return _summary(fault, results, audit), set(audit["files"])


def _summary(fault, results, audit):
    times = [
        (datetime.fromisoformat(body["completed_at"]) - datetime.fromisoformat(body["created_at"])).total_seconds()
        for body in results
        if body["status"] in TERMINAL and body["completed_at"]
    ]
    statuses = Counter(body["status"] for body in results)
    failed = [body for body in results if body["status"] == "failed"]
    clear = [body for body in failed if CLEAR_ERROR.match(body["error"] or "")]
    stuck = [body for body in results if body["status"] not in TERMINAL]
    return {
        "fault": fault,
        "runs": len(results),
        "succeeded": statuses["succeeded"],
        "failed_clear": len(clear),
        "other": len(failed) - len(clear) + statuses["canceled"],
        "stuck": len(stuck),
        "resent": sum(audit["dispatch_attempts"].get(body["id"], 0) > 1 for body in results),
        "lost": len(audit["lost"]),
        "orphaned": len(audit["orphaned"]),
        "p50": statistics.median(times) if times else None,
        "max": max(times) if times else None,
        "errors": Counter(_shape(body["error"]) for body in failed).most_common(),
        "lost_files": audit["lost"],
        "orphaned_files": audit["orphaned"],
        "stuck_ids": [body["id"] for body in stuck],
    }


def _shape(error):
    """An error without the parts that change from run to run (ports, ids)."""
    return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", error or "(no error text)")


def _seconds(value):
    return "-" if value is None else f"{value:.1f}"


def main():
    args = parse_args()
    harness.check_interpreter()
    harness.stop_children_on_sigterm()
    bench = Bench(args)
    summaries = []
    started = time.monotonic()
    try:
        print(f"starting gunicorn, Cog server, Celery worker and beat under {args.var_dir} ...", flush=True)
        bench.start()
        meter = harness.CpuMeter()
        files = set()
        for fault in args.faults:
            fault_started = time.monotonic()
            summary, files = run_fault(bench, fault, files)
            summaries.append(summary)
            print(f"[{fault}] {summary['runs']} runs in {time.monotonic() - fault_started:.0f} s", flush=True)
        load = meter.summary()
    finally:
        bench.stop()
    elapsed = time.monotonic() - started
    config = (
        ("PostgreSQL" if args.database_url else "SQLite")
        + " + "
        + ("Redis" if args.broker_url.startswith("redis") else "filesystem broker")
    )
    (args.var_dir / "results.json").write_text(
        json.dumps(
            {
                "config": config,
                "args": {k: str(v) for k, v in vars(args).items()},
                "load": load,
                "elapsed_s": elapsed,
                "faults": summaries,
            },
            indent=1,
        )
    )
    print()
    print(
        f"Faults, {args.runs} runs each ({config}; {elapsed / 60:.1f} min; machine CPU busy {load['cpu_busy']:.0%}, "
        f"load average {load['loadavg_start']:.1f} -> {load['loadavg_end']:.1f})"
    )
    harness.print_table(
        [
            "fault",
            "runs",
            "succeeded",
            "failed, clear error",
            "other",
            "stuck",
            "lost files",
            "orphaned files",
            "p50 s",
            "max s",
            "sent again",
        ],
        [
            (
                s["fault"],
                s["runs"],
                s["succeeded"],
                s["failed_clear"],
                s["other"],
                s["stuck"],
                s["lost"],
                s["orphaned"],
                _seconds(s["p50"]),
                _seconds(s["max"]),
                s["resent"],
            )
            for s in summaries
        ],
    )
    print(
        "\np50/max s: time to terminal (created_at -> completed_at); other: failed without a clear error, or "
        "canceled;\nsent again: predictions handed to the Cog server more than once (it had lost them)"
    )
    for s in summaries:
        for error, count in s["errors"]:
            print(f"  [{s['fault']}] {count} x {error}")
        for kind in ("stuck_ids", "lost_files", "orphaned_files"):
            if s[kind]:
                print(f"  [{s['fault']}] {kind.replace('_', ' ')}: {', '.join(s[kind][:10])}")
    print(f"\nlogs and results.json: {args.var_dir}")
    bad = sum(s["other"] + s["stuck"] + s["lost"] + s["orphaned"] for s in summaries)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
