"""Dispatch overhead: what Lightbox adds to a prediction on a Cog server.

For each configuration it starts its own components: the web server as the
Procfile runs it (gunicorn's gthread workers with --trace) on a free port, a Celery worker, the Cog server Lightbox dispatches to (with
--upload-url pointing at Lightbox, as Lightbox runs its own servers) and a
second, plain Cog server for the direct calls; both run tests/cog_predictor,
the instant predictor. Then, sequentially, for each of N inputs:

  straight  POST /predictions to the plain Cog server, synchronously
  through   POST /v1/predictions with `Prefer: wait` to Lightbox, until the
            response is terminal (request -> row -> Celery -> Cog -> webhooks
            -> stored outputs -> response)

in alternating order, and reports p50/p95 of both and of the per-input
difference (the overhead), plus where Lightbox's time goes, from the rows'
timestamps. Configurations:

  postgres  PostgreSQL + Redis (DATABASE_URL, CELERY_BROKER_URL); the database
            is dropped and created again, the Redis DB flushed
  embedded  no env vars: SQLite + kombu's filesystem transport under var/

Run with the project's venv: .venv/bin/python bench/dispatch_overhead.py
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=["postgres", "embedded", "both"], default="both")
    parser.add_argument("-n", "--predictions", type=int, default=200, help="measured predictions (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured predictions first (default 10)")
    parser.add_argument(
        "--database-url",
        default=harness.DEFAULT_DATABASE_URL,
        help="PostgreSQL database, dropped and recreated (default %(default)s)",
    )
    parser.add_argument(
        "--broker-url", default=harness.DEFAULT_BROKER_URL, help="Redis DB, flushed (default %(default)s)"
    )
    parser.add_argument(
        "--var-dir",
        type=Path,
        default=harness.DEFAULT_VAR_DIR,
        help="LIGHTBOX_VAR_DIR parent; logs and results go here too (default %(default)s)",
    )
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    parser.add_argument("--web-threads", type=int, default=8, help="gunicorn threads per worker (default 8)")
    parser.add_argument("--worker-pool", default="threads", help="Celery pool (default threads, as the tests)")
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument(
        "--no-upload-url",
        action="store_true",
        help="run Lightbox's Cog server without --upload-url (outputs come as data: URIs)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=4,
        help="num_inference_steps of each input; each step is a log line, so a webhook (default 4)",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="log each web request's start and end (bench/gunicorn_trace.py) to logs/web.log",
    )
    return parser.parse_args()


def run_config(config, args):
    import httpx

    var_dir = args.var_dir / config
    log_dir = var_dir / "logs"
    harness.reset_var_dir(var_dir)
    if config == "postgres":
        harness.reset_postgres(args.database_url)
        harness.reset_redis(args.broker_url)
    web_port, cog_port, direct_port = harness.free_port(), harness.free_port(), harness.free_port()
    env = harness.config_env(config, var_dir, web_port, args.database_url, args.broker_url)
    site = env["SITE_URL"]
    processes = []
    try:
        print(f"[{config}] migrating, starting gunicorn, two Cog servers, a Celery worker ...", flush=True)
        harness.manage(env, "migrate", "--noinput")
        extra = ["--config", str(Path(__file__).parent / "gunicorn_trace.py")] if args.trace else []
        # The trace hooks are gthread's (gunicorn's pre/post_request).
        server = "gthread" if args.trace else "asgi"
        processes.append(harness.gunicorn(web_port, env, log_dir, args.web_workers, args.web_threads, extra, server))
        upload_url = (
            None
            if args.no_upload_url
            else harness.django_step(env, "upload-url", "--cog-url", f"http://127.0.0.1:{cog_port}")["upload_url"]
        )
        processes.append(harness.cog_server(cog_port, env, log_dir, upload_url=upload_url, name="cog-lightbox"))
        processes.append(harness.cog_server(direct_port, env, log_dir, name="cog-direct"))
        setup = harness.django_step(env, "setup-dispatch", "--cog-url", f"http://127.0.0.1:{cog_port}")
        processes.append(harness.celery_worker(env, log_dir, args.worker_pool, args.worker_concurrency))

        lightbox = httpx.Client(
            base_url=site, timeout=90, headers={"Authorization": f"Bearer {setup['token']}", "Prefer": "wait"}
        )
        direct = httpx.Client(base_url=f"http://127.0.0.1:{direct_port}", timeout=90)
        records = []
        meter = None
        total = args.warmup + args.predictions
        for i in range(total):
            if i == args.warmup:
                meter = harness.CpuMeter()
                cpu_start = {proc.name: proc.cpu_seconds() for proc in processes}
                pg = harness.PostgresCpu(args.database_url) if config == "postgres" else None
            for process in processes:
                process.check_alive()
            inp = {"prompt": f"benchmark input {i}", "seed": i, "num_inference_steps": args.steps}
            if i % 2:
                straight = _straight(direct, inp)
                through = _through(lightbox, setup["version"], inp)
            else:
                through = _through(lightbox, setup["version"], inp)
                straight = _straight(direct, inp)
            if i >= args.warmup:
                records.append({**through, "straight": straight["seconds"], "retries_409": straight["retries"]})
            if (i + 1) % 50 == 0:
                print(f"[{config}] {i + 1}/{total}", flush=True)
        load = meter.summary()
        load["cpu_ms_per_prediction"] = {
            proc.name: round((proc.cpu_seconds() - cpu_start[proc.name]) * 1000 / len(records), 1) for proc in processes
        }
        if pg:
            load["cpu_ms_per_prediction"]["postgres"] = round(pg.seconds() * 1000 / len(records), 1)
        timings = harness.django_step(env, "timings", stdin="\n".join(r["id"] for r in records))
    finally:
        for process in reversed(processes):
            process.stop()
    return _report(config, args, records, timings, load, var_dir)


def _straight(client, inp):
    """Synchronous POST /predictions to the plain Cog server; a 409 right after
    the previous call ended (docs/protocols.md) is retried and counted."""
    retries = 0
    started = time.perf_counter()
    while True:
        response = client.post("/predictions", json={"input": inp})
        if response.status_code != 409:
            break
        retries += 1
        time.sleep(0.002)
    seconds = time.perf_counter() - started
    body = response.json()
    if response.status_code != 200 or body.get("status") != "succeeded":
        raise RuntimeError(f"direct Cog call failed: {response.status_code} {str(body)[:500]}")
    return {"seconds": seconds, "retries": retries}


def _through(client, version, inp):
    sent = time.time()
    started = time.perf_counter()
    response = client.post("/v1/predictions", json={"version": version, "input": inp})
    body = response.json()
    polls = 0
    while response.status_code in (200, 201) and body.get("status") not in ("succeeded", "failed", "canceled"):
        # The wait ran out (60 s): keep following it, as Replicate's client does, for a while.
        if time.perf_counter() - started > 120:
            raise RuntimeError(
                f"prediction {body.get('id')} still {body.get('status')} after 120 s "
                "(is the worker alive? see the logs folder)"
            )
        polls += 1
        time.sleep(0.05)
        response = client.get(body["urls"]["get"])
        body = response.json()
    seconds = time.perf_counter() - started
    if body.get("status") != "succeeded" or not body.get("output"):
        raise RuntimeError(f"Lightbox prediction did not succeed: {response.status_code} {str(body)[:500]}")
    return {"id": body["id"], "through": seconds, "sent": sent, "received": time.time(), "polls": polls}


def _ms(seconds):
    return f"{seconds * 1000:.1f}"


def _report(config, args, records, timings, load, var_dir):
    straight = [r["straight"] for r in records]
    through = [r["through"] for r in records]
    overhead = [r["through"] - r["straight"] for r in records]
    p = harness.percentile
    summary = {
        "config": config,
        "n": len(records),
        "straight_p50": p(straight, 50),
        "straight_p95": p(straight, 95),
        "through_p50": p(through, 50),
        "through_p95": p(through, 95),
        "overhead_p50": p(overhead, 50),
        "overhead_p95": p(overhead, 95),
        "overhead_mean": statistics.fmean(overhead),
        "retries_409": sum(r["retries_409"] for r in records),
        "followed_by_polling": sum(1 for r in records if r["polls"]),
        **load,
    }
    # Where Lightbox's time goes, from the rows' timestamps (one machine, one clock).
    phases = [
        ("request -> row saved", "sent", "created_at"),
        ("row -> worker picked it up", "created_at", "attempted_at"),
        ("worker -> Cog accepted (PUT)", "attempted_at", "dispatched_at"),
        ("Cog accepted -> first webhook", "dispatched_at", "started_at"),
        ("first -> terminal webhook stored", "started_at", "completed_at"),
        ("terminal -> response received", "completed_at", "received"),
    ]
    breakdown = []
    for label, start, end in phases:
        values = []
        for r in records:
            row = {**timings.get(r["id"], {}), "sent": r["sent"], "received": r["received"]}
            if row.get(start) is not None and row.get(end) is not None:
                values.append(row[end] - row[start])
        if values:
            breakdown.append((label, _ms(p(values, 50)), _ms(p(values, 95))))
    predict = [t["predict_time"] for t in timings.values() if t.get("predict_time") is not None]
    if predict:
        breakdown.append(("(Cog's own predict_time)", _ms(p(predict, 50)), _ms(p(predict, 95))))
    summary["breakdown"] = breakdown
    (var_dir / "results.json").write_text(json.dumps({"summary": summary, "records": records}, indent=1))
    return summary


def main():
    args = parse_args()
    harness.check_interpreter()
    harness.stop_children_on_sigterm()
    configs = ["postgres", "embedded"] if args.config == "both" else [args.config]
    summaries = [run_config(config, args) for config in configs]
    print()
    print(
        f"Dispatch overhead, {args.predictions} sequential predictions (ms; overhead = through - straight, per input)"
    )
    harness.print_table(
        ["config", "straight p50", "p95", "through p50", "p95", "overhead p50", "p95", "cpu busy", "load"],
        [
            (
                s["config"],
                _ms(s["straight_p50"]),
                _ms(s["straight_p95"]),
                _ms(s["through_p50"]),
                _ms(s["through_p95"]),
                _ms(s["overhead_p50"]),
                _ms(s["overhead_p95"]),
                f"{s['cpu_busy']:.0%}",
                f"{s['loadavg_start']:.1f}->{s['loadavg_end']:.1f}",
            )
            for s in summaries
        ],
    )
    for s in summaries:
        print()
        print(f"Where the time goes through Lightbox [{s['config']}] (ms)")
        harness.print_table(["phase", "p50", "p95"], s["breakdown"])
        print(
            "  CPU ms per prediction: "
            + ", ".join(f"{k} {v}" for k, v in s["cpu_ms_per_prediction"].items())
            + " (cog-direct: the straight calls; Redis not counted)"
        )
        if s["retries_409"] or s["followed_by_polling"]:
            print(
                f"  direct calls retried after 409: {s['retries_409']}; "
                f"Lightbox responses followed by polling: {s['followed_by_polling']}"
            )


if __name__ == "__main__":
    main()
