"""A 1,000-cell grid on the tiny model through PostgreSQL + Redis (issue 14, item 7).

    .venv/bin/python bench/grid_scale.py                      # 1,000 cells (40 seeds x 25 prompts)
    .venv/bin/python bench/grid_scale.py --seeds 10 --words 5 --page-requests 50
    .venv/bin/python bench/grid_scale.py --page-only          # step 3 again, on the last run's grid

Starts gunicorn (as the Procfile runs it), a Celery worker and one Cog server
on tests/cog_predictor (the tiny predictor), on a fresh PostgreSQL database and
Redis DB 5, then:

1. accept: POST /v1/grids of 1,000 cells, the client's time until the 201
   (target < 1 s). The cells are started afterwards by tasks.grids. Measured
   on --accepts more grids too, each canceled at once (so they do not run).
2. run: the 1,000 cells run on the one Cog server (one slot: one at a time);
   Lightbox's overhead per cell = (the grid's wall time from the 201 to its
   last cell ending) / cells - the predictions' own mean predict time.
3. page: GET /g/<id> with all 1,000 cells done, --page-requests times one at a
   time: p50 / p95 of the client's time (target p50 < 150 ms), and the SQL
   queries of the page for a 1,000-cell grid and a 4-cell grid (constant);
   also the server's own time (Server-Timing) and the load average.
   --page-only does step 3 alone, on the database and var dir an earlier
   run left (gunicorn only: no reset, no Cog server, no worker).
Results in var/bench/grid_scale/results.json (page-only.json with --page-only).
"""

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

WORDS = (
    "fox owl cat heron lighthouse castle robot dragon garden river mountain desert ocean storm sunset "
    "harbour forest city street astronaut violin teapot bicycle tower bridge"
).split()


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/lightbox_grid_bench")
    parser.add_argument("--broker-url", default=harness.DEFAULT_BROKER_URL)
    parser.add_argument("--var-dir", type=Path, default=harness.DEFAULT_VAR_DIR / "grid_scale")
    parser.add_argument("--seeds", type=int, default=40, help="X axis: seeds 1..N")
    parser.add_argument("--words", type=int, default=25, help="Y axis: prompt search/replace values")
    parser.add_argument("--accepts", type=int, default=5, help="more grids created (and canceled) to time the 201")
    parser.add_argument("--page-requests", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds the cells may take")
    parser.add_argument("--page-only", action="store_true", help="only the page, on an earlier run's grid")
    return parser.parse_args()


def grid_body(version, args, seed_offset=0):
    words = (
        WORDS[: args.words] if args.words <= len(WORDS) else WORDS + [f"w{i}" for i in range(args.words - len(WORDS))]
    )
    return {
        "versions": [version],
        "input": {"prompt": "a fox in the snow", "num_inference_steps": 1, "width": 64, "height": 64},
        "axes": [
            {"kind": "seed", "values": f"{1 + seed_offset}-{args.seeds + seed_offset}"},
            {"kind": "prompt", "values": "|".join(words)},
        ],
        "visibility": "unlisted",
    }


def main():
    args = parse_args()
    harness.stop_children_on_sigterm()
    harness.check_interpreter()
    import httpx

    # Absolute: the processes run in the var dir, and a relative one would nest there.
    var_dir = args.var_dir.resolve()
    log_dir = var_dir / "logs"
    if args.page_only:
        return page_only(args, var_dir, log_dir)
    harness.reset_var_dir(var_dir)
    harness.reset_postgres(args.database_url)
    harness.reset_redis(args.broker_url)
    web_port, cog_port = harness.free_port(), harness.free_port()
    env = harness.config_env("postgres", var_dir, web_port, args.database_url, args.broker_url)
    env["LIGHTBOX_GRID_MAX_CELLS"] = str(max(1000, args.seeds * args.words))
    env["LIGHTBOX_SERVER_TIMING"] = "1"
    site = env["SITE_URL"]
    processes = []
    results = {"cells": args.seeds * args.words}
    try:
        print("migrating, starting gunicorn, a Cog server, a Celery worker ...", flush=True)
        harness.manage(env, "migrate", "--noinput")
        processes.append(harness.gunicorn(web_port, env, log_dir))
        upload = harness.django_step(env, "upload-url", "--cog-url", f"http://127.0.0.1:{cog_port}")["upload_url"]
        processes.append(harness.cog_server(cog_port, env, log_dir, upload_url=upload))
        setup = harness.django_step(env, "setup-dispatch", "--cog-url", f"http://127.0.0.1:{cog_port}")
        processes.append(harness.celery_worker(env, log_dir, concurrency=4))
        # As the Procfile runs it: the reconciler sends again what a busy or restarted server lost.
        processes.append(harness.celery_beat(env, log_dir))
        client = httpx.Client(base_url=site, timeout=60, headers={"Authorization": f"Bearer {setup['token']}"})

        # 1. accept
        started = time.perf_counter()
        response = client.post("/v1/grids", json=grid_body(setup["version"], args))
        accept = time.perf_counter() - started
        response.raise_for_status()
        grid = response.json()
        accepts = [accept]
        for i in range(args.accepts):
            started = time.perf_counter()
            other = client.post("/v1/grids", json=grid_body(setup["version"], args, seed_offset=10_000 * (i + 1)))
            accepts.append(time.perf_counter() - started)
            other.raise_for_status()
            client.post(f"/v1/grids/{other.json()['id']}/cancel").raise_for_status()
        results["accept_seconds"] = {
            "first": round(accept, 3),
            "p50": round(statistics.median(accepts), 3),
            "max": round(max(accepts), 3),
            "runs": len(accepts),
        }
        print(
            f"accepted {grid['cells']} cells in {accept * 1000:.0f} ms (p50 of {len(accepts)}: "
            f"{statistics.median(accepts) * 1000:.0f} ms)",
            flush=True,
        )

        # 2. run
        deadline = time.monotonic() + args.timeout
        while True:
            for process in processes:
                process.check_alive()
            state = client.get(f"/v1/grids/{grid['id']}").json()
            done = state["counts"]["done"]
            if done >= grid["cells"] or time.monotonic() > deadline:
                break
            print(f"  {done}/{grid['cells']} cells done", flush=True)
            time.sleep(5)
        timing = harness.django_step(env, "grid-timings", "--grid", grid["id"], script=__file__)
        results["run"] = timing
        print(json.dumps(timing), flush=True)
        (var_dir / "results.json").write_text(json.dumps(results, indent=2))

        # 3. page
        analyze(args.database_url)
        results["page_ms"] = measure_page(site, grid["id"], args.page_requests)
        (var_dir / "results.json").write_text(json.dumps(results, indent=2))
        try:
            results["page_queries"] = harness.django_step(env, "grid-queries", "--grid", grid["id"], script=__file__)
        except RuntimeError as exc:
            print(exc, flush=True)
            results["page_queries"] = {"big": "?", "small": "?"}
    finally:
        for process in reversed(processes):
            process.stop()
    (var_dir / "results.json").write_text(json.dumps(results, indent=2))
    harness.print_table(
        ["figure", "value"],
        [
            ["cells", results["cells"]],
            ["accept (first), ms", round(results["accept_seconds"]["first"] * 1000)],
            [
                "accept p50 / max, ms",
                f"{results['accept_seconds']['p50'] * 1000:.0f} / {results['accept_seconds']['max'] * 1000:.0f}",
            ],
            ["cells succeeded", results["run"]["succeeded"]],
            ["wall, s", results["run"]["wall_seconds"]],
            ["mean predict time, ms", results["run"]["mean_predict_ms"]],
            ["overhead per cell, ms", results["run"]["overhead_per_cell_ms"]],
            ["page p50 / p95, ms", f"{results['page_ms']['p50']} / {results['page_ms']['p95']}"],
            ["page queries (1000 / 4 cells)", f"{results['page_queries']['big']} / {results['page_queries']['small']}"],
        ],
    )


SERVER_TIMING_RE = re.compile(r"app;dur=([\d.]+)")


def analyze(database_url):
    """Fresh statistics, as a deployment's autovacuum keeps them (this
    machine's PostgreSQL runs without it): with none, the page's join of
    1,000 cells is planned as a nested loop over "4 rows"."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("ANALYZE")


def measure_page(site, grid_id, requests):
    """GET /g/<id> `requests` times, one at a time, as a visitor (after 5 to
    warm up): the client's time, the server's (Server-Timing) and the load."""
    import httpx

    times, server = [], []
    page_url = f"/g/{grid_id}"
    anonymous = httpx.Client(base_url=site, timeout=60)
    for _ in range(5):
        anonymous.get(page_url).raise_for_status()
    meter = harness.CpuMeter()
    for _ in range(requests):
        started = time.perf_counter()
        page = anonymous.get(page_url)
        times.append(time.perf_counter() - started)
        page.raise_for_status()
        match = SERVER_TIMING_RE.search(page.headers.get("server-timing", ""))
        if match:
            server.append(float(match.group(1)))
    return {
        "p50": round(statistics.median(times) * 1000, 1),
        "p95": round(harness.percentile(times, 95) * 1000, 1),
        "min": round(min(times) * 1000, 1),
        "server_p50": round(statistics.median(server), 1) if server else None,
        "requests": len(times),
        "bytes": len(page.content),
        "cells_in_html": page.text.count('class="grid-cell"'),
        **meter.summary(),
    }


def page_only(args, var_dir, log_dir):
    """Step 3 alone on the grid an earlier run left in --database-url."""
    web_port = harness.free_port()
    env = harness.config_env("postgres", var_dir, web_port, args.database_url, args.broker_url)
    env["LIGHTBOX_SERVER_TIMING"] = "1"
    web = harness.gunicorn(web_port, env, log_dir)
    analyze(args.database_url)
    try:
        grid_id = harness.django_step(env, "grid-biggest", script=__file__)["grid"]
        results = {"grid": grid_id, "page_ms": measure_page(env["SITE_URL"], grid_id, args.page_requests)}
        results["page_queries"] = harness.django_step(env, "grid-queries", "--grid", grid_id, script=__file__)
    finally:
        web.stop()
    (var_dir / "page-only.json").write_text(json.dumps(results, indent=2))
    page = results["page_ms"]
    harness.print_table(
        ["figure", "value"],
        [
            ["page p50 / p95 / min, ms", f"{page['p50']} / {page['p95']} / {page['min']}"],
            ["server time p50, ms", page["server_p50"]],
            ["load average (start / end)", f"{page['loadavg_start']:.1f} / {page['loadavg_end']:.1f}"],
            ["page queries (1000 / 4 cells)", f"{results['page_queries']['big']} / {results['page_queries']['small']}"],
        ],
    )


# --- Django-side steps (a child process with the configuration's env) ---


def step_grid_timings(grid_id):
    harness._django()
    from django.db.models import Max, Min

    from app.models import Grid, Prediction

    grid = Grid.objects.get(pk=grid_id)
    cells = Prediction.objects.filter(comparison__grid=grid)
    span = cells.aggregate(first=Min("created_at"), last=Max("completed_at"))
    times = [t for t in cells.values_list("predict_time", flat=True) if t is not None]
    wall = (span["last"] - grid.created_at).total_seconds() if span["last"] else None
    count = cells.count()
    mean = statistics.mean(times) if times else 0
    return {
        "started": count,
        "succeeded": cells.filter(status="succeeded").count(),
        "failed": cells.filter(status="failed").count(),
        "wall_seconds": round(wall, 1) if wall else None,
        "all_started_after_seconds": round((grid.materialised_at - grid.created_at).total_seconds(), 2)
        if grid.materialised_at
        else None,
        "mean_predict_ms": round(mean * 1000, 1),
        "overhead_per_cell_ms": round((wall / count - mean) * 1000, 1) if wall and count else None,
    }


def step_grid_biggest():
    harness._django()
    from app.models import Grid

    return {"grid": Grid.objects.order_by("-planned", "created_at").values_list("pk", flat=True).first()}


def step_grid_queries(grid_id):
    """The page's SQL queries for the 1,000-cell grid and for a 4-cell grid of
    the same version, run to the end first (the worker is still up; an earlier
    run's 4-cell grid is used again)."""
    harness._django()
    import os
    from urllib.parse import urlsplit

    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from app.models import Grid, Prediction
    from app.services import grids

    big = Grid.objects.get(pk=grid_id)
    axes = [{"kind": "seed", "text": "1, 2"}, {"kind": "prompt", "text": "fox|owl"}]
    small = Grid.objects.filter(owner=big.owner, planned=4).first()
    if small is None:
        small = grids.create(big.owner, grids.grid_versions(big), big.input, axes, visibility="unlisted")
        grids.materialise(small.pk)
    harness.wait_until(
        lambda: Prediction.objects.filter(comparison__grid=small, status__in=Prediction.TERMINAL).count() == 4,
        timeout=600,
        message="the 4-cell grid",
    )
    client = Client(HTTP_HOST=urlsplit(os.environ["SITE_URL"]).netloc)
    counts = {}
    for name, grid in (("big", big), ("small", small)):
        client.get(f"/g/{grid.pk}")  # warm
        with CaptureQueriesContext(connection) as queries:
            response = client.get(f"/g/{grid.pk}")
        assert response.status_code == 200, response.status_code
        counts[name] = len(queries.captured_queries)
    return counts


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "grid-biggest":
    print(json.dumps(step_grid_biggest()))
elif __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] in ("grid-timings", "grid-queries"):
    step = {"grid-timings": step_grid_timings, "grid-queries": step_grid_queries}[sys.argv[1]]
    print(json.dumps(step(sys.argv[sys.argv.index("--grid") + 1])))
elif __name__ == "__main__":
    main()
