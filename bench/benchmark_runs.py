"""Benchmark runs at scale (issue 14, items 3 and 5): the time to accept a run of
~10,000 predictions, Lightbox's own time to start each of its comparisons,
and the run's page and /v1 summary with all 10,000 predictions there.

    .venv/bin/python bench/benchmark_runs.py
    .venv/bin/python bench/benchmark_runs.py --materialise 100 --requests 20 --json var/bench/runs.json

In-process, with Django's test client (no web server: the figures are Django's
own time for each request, middleware included) on its own PostgreSQL database
(--database-url; dropped and made again). Tasks are recorded, not sent: what is
measured is Lightbox's work, never a model's.

(a) POST /v1/benchmarks: all of PartiPrompts (1,632) x 3 seeds x 2 versions =
    9,792 predictions; the request saves one row and queues one task (target < 1 s).
(b) the materialising task on --materialise prompts x 1 seed x 2 versions:
    seconds per comparison (each is comparisons.start: mapping, validation,
    limits, two predictions saved and queued).
(c) the run of (a) filled with 4,896 comparisons and 9,792 succeeded
    predictions (bulk-inserted): GET /b/<id> (first and last page of the
    strip) and GET /v1/benchmarks/<id>, p50 and p95, queries per request.
"""

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/lightbox_bench_runs"),
    )
    parser.add_argument("--requests", type=int, default=30, help="requests per measured page or call")
    parser.add_argument("--materialise", type=int, default=200, help="prompts the timed materialisation starts")
    parser.add_argument("--json", help="also write the results to this file")
    return parser.parse_args()


def setup_django(database_url):
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    admin = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("SECRET_KEY", "bench")
    os.environ["DJANGO_SETTINGS_MODULE"] = "lightbox.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    setup_test_environment()
    call_command("migrate", verbosity=0)  # loads the shipped prompt sets too


def timed(call, repeats):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times, queries = [], []
    for _ in range(repeats):
        with CaptureQueriesContext(connection) as captured:
            start = time.perf_counter()
            response = call()
            times.append(time.perf_counter() - start)
        assert response.status_code in (200, 201, 286), (response.status_code, response.content[:300])
        queries.append(len(captured))
    times.sort()
    return {
        "p50_ms": round(statistics.median(times) * 1000, 1),
        "p95_ms": round(times[int(len(times) * 0.95) - 1] * 1000, 1) if len(times) > 1 else None,
        "max_ms": round(times[-1] * 1000, 1),
        "queries": sorted(set(queries)),
    }


def main():
    args = parse_args()
    setup_django(args.database_url)
    from datetime import timedelta

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from app.models import ApiToken, BenchmarkRun, Comparison, Prediction, PromptSet
    from app.services import benchmarks, catalog
    from tasks import benchmarks as benchmark_tasks
    from tasks import predictions as prediction_tasks

    settings.MAX_CONCURRENT = settings.RATE_LIMIT_PER_MINUTE = settings.DAILY_QUOTA = None
    queued = []
    mock.patch.object(prediction_tasks.run_prediction, "delay", queued.append).start()
    mock.patch.object(benchmark_tasks.materialise, "delay", lambda *a: queued.append(a)).start()

    schema = json.loads((ROOT / "tests" / "cog_predictor" / ".cog" / "openapi_schema.json").read_text())
    versions = []
    for name in ("tiny-sd", "tiny-sdxl"):
        version = catalog.add_version("local", name, "cog", f"http://127.0.0.1:9/{name}", schema)
        version.available, version.checked_at = True, timezone.now() + timedelta(days=1)
        version.save()
        versions.append(version)
    alice = get_user_model().objects.create_user("alice", password="x" * 12)
    token = ApiToken.issue(alice)[1]
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    web = Client()
    web.force_login(alice)
    body = json.dumps(
        {"prompt_set": "partiprompts", "versions": [f"{v.model}:{v.pk}" for v in versions], "seed_count": 3}
    )
    results = {}

    results["accept"] = timed(lambda: api.post("/v1/benchmarks", body, content_type="application/json"), args.requests)
    run = BenchmarkRun.objects.order_by("created_at").first()
    results["accept"]["predictions"] = run.planned * 2

    parti = PromptSet.objects.get(slug="partiprompts", owner=None)
    small = benchmarks.create(alice, parti, versions, sample_size=args.materialise, sample_seed=1, seeds=[5])
    start = time.perf_counter()
    benchmarks.materialise(small.pk)
    elapsed = time.perf_counter() - start
    assert small.comparisons.count() == args.materialise
    results["materialise"] = {
        "comparisons": args.materialise,
        "seconds": round(elapsed, 2),
        "ms_per_comparison": round(elapsed / args.materialise * 1000, 1),
        "ms_per_prediction": round(elapsed / args.materialise / 2 * 1000, 1),
    }

    # The big run, filled as if it had run: 4,896 comparisons, 9,792 predictions.
    prompts = list(parti.prompts.order_by("position"))
    rng = random.Random(1)
    comparisons = Comparison.objects.bulk_create(
        Comparison(owner=alice, benchmark=run, benchmark_prompt=p, seed=s, input={"prompt": p.text})
        for p in prompts
        for s in run.seeds
    )
    now = timezone.now()
    Prediction.objects.bulk_create(
        (
            Prediction(
                version=v,
                owner=alice,
                comparison=c,
                input={"prompt": c.input["prompt"], "seed": c.seed},
                status="succeeded",
                source="web",
                visibility="unlisted",
                predict_time=rng.uniform(0.5, 3.0),
                started_at=now,
                completed_at=now,
            )
            for c in comparisons
            for v in versions
        ),
        batch_size=2000,
    )
    last = (len(comparisons) + 19) // 20
    results["page_first"] = timed(lambda: web.get(f"/b/{run.pk}"), args.requests)
    results["page_last"] = timed(lambda: web.get(f"/b/{run.pk}?page={last}"), args.requests)
    results["progress_partial"] = timed(
        lambda: web.get(f"/b/{run.pk}?part=progress", HTTP_HX_REQUEST="true"), args.requests
    )
    results["api_summary"] = timed(lambda: api.get(f"/v1/benchmarks/{run.pk}"), args.requests)
    results["predictions"] = Prediction.objects.filter(comparison__benchmark=run).count()

    print(f"{'measure':<22} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  queries")
    for key in ("accept", "page_first", "page_last", "progress_partial", "api_summary"):
        row = results[key]
        print(f"{key:<22} {row['p50_ms']:>8} {row['p95_ms']!s:>8} {row['max_ms']:>8}  {row['queries']}")
    m = results["materialise"]
    print(
        f"materialise: {m['comparisons']} comparisons in {m['seconds']} s = {m['ms_per_comparison']} ms each "
        f"({m['ms_per_prediction']} ms a prediction); page and summary over {results['predictions']} predictions"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
