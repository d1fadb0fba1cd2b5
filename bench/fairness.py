"""Fairness at scale (issue 14, item 5): another user's single prediction
beside one user's big batch, and the time to save a batch of 10,000.

Starts its own components on PostgreSQL + Redis: gunicorn (the web process as
the Procfile runs it), a Celery worker (threads), Celery beat (the reconciler
every second) and one Cog server on tests/cog_predictor told to sleep
--seconds per prediction (one slot, as every Cog server).

Phases:
1. absent: user B posts one prediction to /v1/predictions, --repeat times, one
   after the other; B's time to start is its started_at minus its created_at
   (the model began to run), and its end-to-end time.
2. batch: user A's grid of --batch cells is saved (comparisons.start_many
   where the code has it; else, as before fair scheduling, one
   comparisons.start per cell, each prediction a broker message), then, once
   the batch runs, B posts one prediction --repeat times, each when the last
   ended; the same times. Then A's batch is canceled.
3. create: a grid of --create cells (one prediction each) is saved and timed
   in one process (the materialisation task's work), with the broker's queue
   length right after; then canceled.

Target: B's time to start with the batch <= without it + one prediction's time
(the median against the median, the longest against the longest).

Run with the project's venv (~3 min):
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/lightbox_fair_bench CELERY_BROKER_URL=redis://127.0.0.1:6379/7 \\
    .venv/bin/python bench/fairness.py
Before (main's lottery), from a copy of the code before fair scheduling:
  mkdir -p var/base && git archive 242858b | tar -x -C var/base && cp bench/fairness.py var/base/bench/ \\
    && .venv/bin/python var/base/bench/fairness.py
"""

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

TERMINAL = ("succeeded", "failed", "canceled")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/lightbox_fair_bench"),
    )
    parser.add_argument("--broker-url", default=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/7"))
    parser.add_argument("--batch", type=int, default=1000, help="user A's grid cells (one prediction each)")
    parser.add_argument("--create", type=int, default=10000, help="cells of the grid whose saving is timed")
    parser.add_argument("--repeat", type=int, default=5, help="B's predictions per phase")
    parser.add_argument("--seconds", type=float, default=0.5, help="each prediction's sleep on the Cog server")
    parser.add_argument("--b-timeout", type=float, default=300, help="seconds B waits for one prediction")
    parser.add_argument("--concurrency", type=int, default=4, help="the Celery worker's threads")
    parser.add_argument("--var-dir", type=Path, default=harness.ROOT / "var" / "bench-fairness")
    return parser.parse_args()


def sleep_input(seconds, prompt):
    return {"prompt": prompt, "num_inference_steps": 1, "step_delay": seconds, "width": 16, "height": 16}


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

    def start(self):
        harness.reset_var_dir(self.args.var_dir)
        harness.create_postgres_if_missing(self.args.database_url)
        harness.reset_postgres(self.args.database_url)
        harness.reset_redis(self.args.broker_url)
        harness.manage(self.env, "migrate", "--noinput", "-v0")
        port = harness.free_port()
        self.cog_url = f"http://127.0.0.1:{port}"
        upload_url = harness.django_step(self.env, "upload-url", "--cog-url", self.cog_url)["upload_url"]
        self.processes.append(harness.cog_server(port, self.env, self.log_dir, upload_url))
        self.processes.append(harness.gunicorn(self.site_port, self.env, self.log_dir))
        self.processes.append(harness.celery_worker(self.env, self.log_dir, concurrency=self.args.concurrency))
        self.processes.append(harness.celery_beat(self.env, self.log_dir))
        self.setup = self.step("setup", "--url", self.cog_url)
        self.headers = {"Authorization": f"Bearer {self.setup['token']}"}

    def step(self, name, *args):
        return harness.django_step(self.env, "--django-step", name, *args, script=__file__)

    def stop(self):
        for process in self.processes:
            process.stop()


def _time(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def b_predictions(bench, label):
    """B's --repeat predictions, one after the other: [(to start, end to end)] in seconds."""
    import httpx

    times = []
    with httpx.Client(base_url=bench.site, headers=bench.headers, timeout=120) as client:
        for index in range(bench.args.repeat):
            body = {
                "version": bench.setup["version"],
                "input": sleep_input(bench.args.seconds, f"B {label} {index}"),
            }
            created = client.post("/v1/predictions", json=body)
            created.raise_for_status()
            url = created.json()["urls"]["get"]
            deadline = time.monotonic() + bench.args.b_timeout
            while time.monotonic() < deadline:
                payload = client.get(url).json()
                if payload["status"] in TERMINAL:
                    break
                time.sleep(0.05)
            else:
                # Not even started (the lottery before fair scheduling): count it as the timeout.
                client.post(payload["urls"]["cancel"])
                times.append((bench.args.b_timeout, bench.args.b_timeout))
                print(f"B's prediction {payload['id']} did not end within {bench.args.b_timeout} s", flush=True)
                continue
            if payload["status"] != "succeeded":
                raise RuntimeError(f"B's prediction {payload['id']}: {payload['status']} {payload['error']}")
            created_at = _time(payload["created_at"])
            times.append((_time(payload["started_at"]) - created_at, _time(payload["completed_at"]) - created_at))
    return times


def summary(times):
    starts = [start for start, _ in times]
    totals = [total for _, total in times]
    return {
        "start_median_s": round(statistics.median(starts), 3),
        "start_max_s": round(max(starts), 3),
        "total_median_s": round(statistics.median(totals), 3),
        "start_all_s": [round(s, 3) for s in starts],
    }


def run(bench):
    results = {}
    meter = harness.CpuMeter()
    results["absent"] = summary(b_predictions(bench, "absent"))
    print("absent", json.dumps(results["absent"]), flush=True)

    made = bench.step("grid", "--cells", str(bench.args.batch), "--seconds", str(bench.args.seconds))
    print("batch saved", json.dumps(made), flush=True)
    # The batch runs: a few of A's have ended before B comes.
    harness.wait_until(lambda: bench.step("progress", "--grid", made["grid"])["ended"] >= 3, timeout=300, interval=0.5)
    results["batch"] = summary(b_predictions(bench, "batch"))
    results["batch"]["a_ended_meanwhile"] = bench.step("progress", "--grid", made["grid"])["ended"]
    results["batch"]["a_saved_s"] = made["seconds"]
    print("batch", json.dumps(results["batch"]), flush=True)
    results["one_prediction_s"] = bench.step("predict-time")["median_s"]
    bench.step("cancel", "--grid", made["grid"])

    created = bench.step("grid", "--cells", str(bench.args.create), "--seconds", str(bench.args.seconds))
    results["create"] = {"cells": bench.args.create, **created}
    print("create", json.dumps(results["create"]), flush=True)
    bench.step("cancel", "--grid", created["grid"])
    results["load"] = meter.summary()
    absent, batch = results["absent"], results["batch"]
    one = results["one_prediction_s"] or 0
    results["target_median_s"] = round(absent["start_median_s"] + one, 3)
    results["target_max_s"] = round(absent["start_max_s"] + one, 3)
    results["met"] = batch["start_median_s"] <= results["target_median_s"] and (
        batch["start_max_s"] <= results["target_max_s"]
    )
    return results


# --- Django-side steps ---------------------------------------------------------


def step_setup(args):
    harness._django()
    from app.models import ApiToken
    from app.services import catalog

    harness._user("a")
    b = harness._user("b")
    _, token = ApiToken.issue(b, name="fairness benchmark")
    version = catalog.import_version(args.url, "local/sleeper")
    catalog.refresh_availability(version, max_age=0)
    if not version.available:
        raise SystemExit(f"version not available: {version.unavailable_reason}")
    print(json.dumps({"token": token, "version": version.id}))


def step_grid(args):
    """User A's grid of `cells` cells, saved as its materialisation task would."""
    harness._django()
    from app.models import Grid, Prediction, Version
    from app.services import comparisons

    a = harness._user("a")
    version = Version.objects.get(model__owner="local", model__name="sleeper")
    grid = Grid.objects.create(owner=a, title="fairness", input={"prompt": "A"})
    inputs = [sleep_input(args.seconds, f"A {index}") for index in range(args.cells)]
    started = time.perf_counter()
    if hasattr(comparisons, "start_many"):
        cells = [comparisons.Cell([version], given, seed=i, place={"grid_x": i}) for i, given in enumerate(inputs)]
        comparisons.start_many(cells, owner=a, grid=grid)
    else:
        # Before fair scheduling: one comparison at a time, each prediction a broker message.
        for index, given in enumerate(inputs):
            comparison = comparisons.start([version], given, owner=a, seed=index)
            comparison.grid = grid
            comparison.save(update_fields=["grid"])
    seconds = time.perf_counter() - started
    saved = Prediction.objects.filter(comparison__grid=grid)
    # run_prediction messages sent for them as they were saved: every one
    # before fair scheduling; after, only those let go (the server's free slot).
    sent = saved.not_held().count() if hasattr(Prediction.objects, "not_held") else saved.count()
    print(json.dumps({"grid": grid.id, "seconds": round(seconds, 3), "saved": saved.count(), "messages": sent}))


def step_progress(args):
    harness._django()
    from app.models import Prediction

    ended = Prediction.objects.filter(comparison__grid_id=args.grid, status__in=TERMINAL).count()
    print(json.dumps({"ended": ended}))


def step_predict_time(args):
    harness._django()
    from app.models import Prediction

    runs = list(
        Prediction.objects.filter(owner__username="a", status="succeeded").values_list("created_at", "completed_at")
    )
    # One prediction's time on the server, as the batch sees it: from one end to the next.
    ends = sorted(completed for _, completed in runs)
    gaps = [(b - a).total_seconds() for a, b in zip(ends, ends[1:])]
    print(json.dumps({"median_s": round(statistics.median(gaps), 3) if gaps else None}))


def step_cancel(args):
    harness._django()
    from app.models import Comparison, Prediction
    from app.services import comparisons

    try:
        from app.services import scheduling

        scheduling.cancel_held(Prediction.objects.filter(comparison__grid_id=args.grid))
    except ImportError:
        pass  # before fair scheduling: one at a time
    for comparison in Comparison.objects.filter(
        grid_id=args.grid, predictions__status__in=("starting", "processing")
    ).distinct():
        comparisons.cancel(comparison)
    print(json.dumps({"canceled": True}))


def django_main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--django-step", required=True)
    parser.add_argument("--url", default="")
    parser.add_argument("--grid", default="")
    parser.add_argument("--cells", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()
    steps = {
        "setup": step_setup,
        "grid": step_grid,
        "progress": step_progress,
        "predict-time": step_predict_time,
        "cancel": step_cancel,
    }
    steps[args.django_step](args)


def main():
    args = parse_args()
    harness.check_interpreter()
    harness.stop_children_on_sigterm()
    bench = Bench(args)
    started = time.monotonic()
    try:
        print(f"starting gunicorn, a Cog server, a Celery worker and beat under {args.var_dir} ...", flush=True)
        bench.start()
        results = run(bench)
    finally:
        bench.stop()
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    (args.var_dir / "results.json").write_text(json.dumps(results, indent=1))
    print()
    harness.print_table(
        ["", "B to start (median)", "B to start (max)", "B end to end (median)"],
        [
            [
                "batch absent",
                results["absent"]["start_median_s"],
                results["absent"]["start_max_s"],
                results["absent"]["total_median_s"],
            ],
            [
                f"beside A's {args.batch}",
                results["batch"]["start_median_s"],
                results["batch"]["start_max_s"],
                results["batch"]["total_median_s"],
            ],
        ],
    )
    print(
        f"one prediction {results['one_prediction_s']} s; target (absent + one prediction): median "
        f"{results['target_median_s']} s, max {results['target_max_s']} s: "
        f"{'met' if results['met'] else 'NOT met'}; saving {args.create} cells: {results['create']['seconds']} s, "
        f"{results['create']['messages']} broker messages"
    )


if __name__ == "__main__":
    if "--django-step" in sys.argv:
        django_main()
    else:
        main()
