"""API throughput: GET /v1/predictions/{id} and GET /v1/predictions (the list,
100 per page) under load, with 10,000 predictions in PostgreSQL.

It drops and creates the PostgreSQL database, migrates it, creates 10,000
succeeded predictions owned by one user (bulk_create, each with an Output row,
so responses carry output URLs) and an API token for that user, starts the web
server as the Procfile runs it (gunicorn with lightbox.webserver's uvicorn workers, or
with --web-server gthread the gthread workers before them; workers and threads are
options) on a free port,
then drives each endpoint with wrk (closed loop, one wrk thread, C connections,
each request a random prediction id or a random page cursor through all the
pages) for a warm-up and a measured period, at each connection count given.

The load generator is wrk (Debian: apt-get install wrk) with bench/wrk_api.lua
for the Authorization header and the random paths. It runs on the same 2-core
machine as gunicorn and PostgreSQL, and other work on the machine competes too:
the table notes how busy the CPUs were.

Run with the project's venv: .venv/bin/python bench/api_throughput.py
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

LUA = Path(__file__).resolve().parent / "wrk_api.lua"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=int, default=10_000, help="predictions to create (default 10000)")
    parser.add_argument("--outputs", type=int, default=1, help="Output rows per prediction (default 1)")
    parser.add_argument("--endpoints", default="get,list", help="comma-separated: get, list (default both)")
    parser.add_argument("--connections", default="8", help="comma-separated wrk connection counts (default 8)")
    parser.add_argument("--duration", type=int, default=20, help="measured seconds per run (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured seconds before each run (default 5)")
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
        "--var-dir",
        type=Path,
        default=harness.DEFAULT_VAR_DIR,
        help="LIGHTBOX_VAR_DIR parent; logs and results go here too (default %(default)s)",
    )
    parser.add_argument("--show-sql", action="store_true", help="print the SQL each endpoint runs")
    args = parser.parse_args()
    args.endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    args.connections = [int(c) for c in args.connections.split(",")]
    if not set(args.endpoints) <= {"get", "list"}:
        parser.error("--endpoints takes get and/or list")
    return args


def wrk(url, token, paths_file, connections, seconds):
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        "--",
        token,
        str(paths_file),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    for line in result.stdout.splitlines():
        if line.startswith("WRKJSON "):
            return json.loads(line[len("WRKJSON ") :])
    raise RuntimeError(f"wrk printed no summary:\n{result.stdout}\n{result.stderr}")


def _children_cpu():
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main():
    args = parse_args()
    harness.check_interpreter()
    harness.stop_children_on_sigterm()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get update && apt-get install -y wrk")
    var_dir = args.var_dir / "throughput"
    log_dir = var_dir / "logs"
    harness.reset_var_dir(var_dir)
    harness.reset_postgres(args.database_url)
    port = harness.free_port()
    env = harness.config_env("postgres", var_dir, port, args.database_url)
    site = env["SITE_URL"]
    ids_file, cursors_file = var_dir / "ids.txt", var_dir / "cursors.txt"

    print(f"migrating, creating {args.predictions} predictions ...", flush=True)
    harness.manage(env, "migrate", "--noinput")
    started = time.monotonic()
    seed = harness.django_step(
        env,
        "seed",
        "--count",
        str(args.predictions),
        "--outputs",
        str(args.outputs),
        "--ids-file",
        str(ids_file),
        "--cursors-file",
        str(cursors_file),
    )
    print(
        f"  {seed['predictions']} predictions, {seed['outputs']} outputs, {seed['pages']} list pages "
        f"in {time.monotonic() - started:.1f}s",
        flush=True,
    )
    paths = {
        "get": var_dir / "paths-get.txt",
        "list": var_dir / "paths-list.txt",
    }
    paths["get"].write_text("".join(f"/v1/predictions/{i}\n" for i in ids_file.read_text().split()))
    # The first page, then every page after it by its cursor.
    cursors = cursors_file.read_text().split("\n")[:-1]
    paths["list"].write_text("".join(f"/v1/predictions?cursor={c}\n" if c else "/v1/predictions\n" for c in cursors))

    web = harness.gunicorn(port, env, log_dir, args.web_workers, args.web_threads, server=args.web_server)
    results = []
    try:
        for endpoint in args.endpoints:
            for connections in args.connections:
                wrk(site, seed["token"], paths[endpoint], connections, args.warmup)
                meter = harness.CpuMeter()
                pg = harness.PostgresCpu(args.database_url)
                cpu_before = web.cpu_seconds(), _children_cpu()
                summary = wrk(site, seed["token"], paths[endpoint], connections, args.duration)
                web_cpu = web.cpu_seconds() - cpu_before[0]
                pg_cpu = pg.seconds()
                wrk_cpu = _children_cpu() - cpu_before[1]
                load = meter.summary()
                seconds = summary["duration_us"] / 1e6
                errors = sum(v for k, v in summary.items() if k.startswith("errors_"))
                results.append(
                    {
                        "endpoint": endpoint,
                        "connections": connections,
                        "rps": summary["requests"] / seconds,
                        "p50_ms": summary["p50_us"] / 1000,
                        "p90_ms": summary["p90_us"] / 1000,
                        "p99_ms": summary["p99_us"] / 1000,
                        "max_ms": summary["max_us"] / 1000,
                        "errors": errors,
                        "requests": summary["requests"],
                        "kb_per_response": summary["bytes"] / max(1, summary["requests"]) / 1024,
                        "web_cpu_ms_per_request": web_cpu * 1000 / max(1, summary["requests"]),
                        "pg_cpu_ms_per_request": pg_cpu * 1000 / max(1, summary["requests"]),
                        "wrk_cpu_ms_per_request": wrk_cpu * 1000 / max(1, summary["requests"]),
                        **load,
                    }
                )
                r = results[-1]
                # What two cores would serve if this work had them to itself.
                r["rps_2_cores"] = 2000 / (
                    r["web_cpu_ms_per_request"] + r["pg_cpu_ms_per_request"] + r["wrk_cpu_ms_per_request"]
                )
                r = results[-1]
                print(f"  {endpoint} c={connections}: {r['rps']:.0f} req/s, p99 {r['p99_ms']:.1f} ms", flush=True)
    finally:
        web.stop()
    (var_dir / "results.json").write_text(json.dumps({"seed": seed, "results": results}, indent=1))

    print()
    print(
        f"API throughput: {seed['predictions']} predictions in PostgreSQL, gunicorn {args.web_server} "
        f"{args.web_workers} workers x {args.web_threads} threads, wrk 1 thread, {args.duration}s per run"
    )
    harness.print_table(
        [
            "endpoint",
            "conns",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "errors",
            "KB/resp",
            "cpu ms/req web+pg+wrk",
            "2-core req/s",
            "cpu busy",
            "load",
        ],
        [
            (
                r["endpoint"],
                r["connections"],
                f"{r['rps']:.0f}",
                f"{r['p50_ms']:.1f}",
                f"{r['p90_ms']:.1f}",
                f"{r['p99_ms']:.1f}",
                r["errors"],
                f"{r['kb_per_response']:.1f}",
                f"{r['web_cpu_ms_per_request']:.2f}+{r['pg_cpu_ms_per_request']:.2f}+{r['wrk_cpu_ms_per_request']:.2f}",
                f"{r['rps_2_cores']:.0f}",
                f"{r['cpu_busy']:.0%}",
                f"{r['loadavg_start']:.1f}->{r['loadavg_end']:.1f}",
            )
            for r in results
        ],
    )
    print(
        "(2-core req/s: 2000 ms / the CPU ms one request costs gunicorn, its PostgreSQL backends and wrk,"
        " i.e. the rate if this work had both cores to itself)"
    )
    print()
    print("SQL per request: " + ", ".join(f"{k} {v['queries']}" for k, v in seed["queries"].items()))
    if args.show_sql:
        for name, info in seed["queries"].items():
            print(f"  {name}:")
            for sql in info["sql"]:
                print(f"    {sql}")


if __name__ == "__main__":
    main()
