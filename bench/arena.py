"""What the arena's leaderboard costs (issue 15, item 6): the fit and its 200
bootstrap resamples for 50 versions and 100,000 votes, and a /leaderboard
request, which only reads the stored fit.

    .venv/bin/python bench/arena.py                       # 50 versions, 100,000 votes
    .venv/bin/python bench/arena.py --votes 20000 --requests 100 --json var/bench/arena.json

Three figures:

1. the fit alone (app.core.ratings.rate on numpy arrays): the plain
   Bradley-Terry fit with 200 bootstrap resamples, and the style-controlled
   fit (three covariates) with 200 resamples; median of --repeats runs;
2. the whole task (app.services.arena.recompute("")): the votes read from
   PostgreSQL, both fits, the win-rate matrices, the row stored;
3. GET /leaderboard and GET /v1/leaderboard, in-process with Django's test
   client (no network, no web server: Django's own time for the request,
   middleware included), --requests each, p50 and p95.

The database is its own (--database-url, made if missing, emptied first):
--comparisons comparisons of all --versions versions, one 1024x1024 or
768x768 output each (rows only; the leaderboard never opens an image), and
--votes votes by 1,000 voters between random pairs, won with Bradley-Terry
probabilities from known strengths. Targets: fit + bootstrap < 10 s on this
2-core machine; /leaderboard p50 < 50 ms.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=50)
    parser.add_argument("--votes", type=int, default=100_000)
    parser.add_argument("--comparisons", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each fit (the median is reported)")
    parser.add_argument("--requests", type=int, default=200, help="requests per page")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/lightbox_arena_bench")
    parser.add_argument("--json", help="also write the results to this file")
    return parser.parse_args()


def synthetic(k, n, seed=1):
    import numpy as np

    rng = np.random.default_rng(seed)
    strengths = rng.normal(0, 1, k)
    a = rng.integers(0, k, n)
    b = (a + rng.integers(1, k, n)) % k
    p = 1 / (1 + np.exp(-(strengths[a] - strengths[b])))
    u = rng.random(n)
    y = np.where(u < 0.08, 0.5, (rng.random(n) < p).astype(float))
    x = rng.normal(0, 1, (n, 3))
    return strengths, a, b, y, x


def time_fits(args):
    from app.core import ratings

    _, a, b, y, x = synthetic(args.versions, args.votes)
    plain, styled, cpu, styled_cpu = [], [], [], []
    for _ in range(args.repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        fit = ratings.rate(a, b, y, args.versions, rounds=200)
        plain.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
        started, cpu_started = time.perf_counter(), time.process_time()
        ratings.rate(a, b, y, args.versions, covariates=x, rounds=200)
        styled.append(time.perf_counter() - started)
        styled_cpu.append(time.process_time() - cpu_started)
    assert fit.rounds == 200
    return {
        "fit_plain_s": statistics.median(plain),
        "fit_plain_cpu_s": statistics.median(cpu),
        "fit_style_s": statistics.median(styled),
        "fit_style_cpu_s": statistics.median(styled_cpu),
    }


def setup_django(database_url):
    name = database_url.rsplit("/", 1)[1]
    base = database_url.rsplit("/", 1)[0]
    subprocess.run(["psql", f"{base}/postgres", "-qc", f"DROP DATABASE IF EXISTS {name}"], check=True)
    subprocess.run(["psql", f"{base}/postgres", "-qc", f"CREATE DATABASE {name}"], check=True)
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("SECRET_KEY", "bench")
    os.environ["DJANGO_SETTINGS_MODULE"] = "lightbox.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    setup_test_environment()
    call_command("migrate", verbosity=0)


def fill(args):
    """The comparisons, outputs and votes (bulk inserts); the seconds it took."""
    import numpy as np
    from django.utils import timezone

    from app.models import ArenaVote, Comparison, Output, Prediction
    from app.services import catalog

    started = time.perf_counter()
    rng = np.random.default_rng(2)
    versions = [
        catalog.add_version("bench", f"model-{n:02d}", "cog", f"http://127.0.0.1:9/{n}", {})
        for n in range(args.versions)
    ]
    now = timezone.now()
    comparisons = Comparison.objects.bulk_create(
        [Comparison(input={"prompt": f"prompt {n}"}, seed=n, visibility="public") for n in range(args.comparisons)]
    )
    predictions = Prediction.objects.bulk_create(
        [
            Prediction(
                version=version,
                comparison=comparison,
                status="succeeded",
                visibility="public",
                completed_at=now,
                predict_time=float(rng.uniform(0.5, 8)),
            )
            for comparison in comparisons
            for version in versions
        ],
        batch_size=5000,
    )
    sizes = [1024, 768]
    outputs = Output.objects.bulk_create(
        [
            Output(
                prediction=prediction,
                index=0,
                file=f"outputs/bench/{prediction.pk}.png",
                width=sizes[n % 2],
                height=sizes[n % 2],
                sha256="0" * 64,
            )
            for n, prediction in enumerate(predictions)
        ],
        batch_size=5000,
    )
    k = args.versions
    strengths, a, b, y, _ = synthetic(k, args.votes)
    which = rng.integers(0, args.comparisons, args.votes)
    voter = rng.integers(0, 1000, args.votes)
    seen = set()
    votes = []
    for n in range(args.votes):
        first, second = outputs[which[n] * k + a[n]], outputs[which[n] * k + b[n]]
        outcome = {1.0: "a", 0.0: "b", 0.5: "tie"}[float(y[n])]
        if first.pk > second.pk:
            first, second = second, first
            outcome = {"a": "b", "b": "a"}.get(outcome, outcome)
        key = (int(voter[n]), first.pk, second.pk)
        if key in seen:
            continue
        seen.add(key)
        votes.append(
            ArenaVote(
                voter_key=f"u{voter[n] + 10_000}",
                comparison_id=first.prediction.comparison_id,
                output_a=first,
                output_b=second,
                version_a_id=first.prediction.version_id,
                version_b_id=second.prediction.version_id,
                left="a",
                outcome=outcome,
            )
        )
    ArenaVote.objects.bulk_create(votes, batch_size=5000)
    return time.perf_counter() - started, len(votes)


def time_task():
    from app.services import arena

    started, cpu = time.perf_counter(), time.process_time()
    arena.recompute("")
    return time.perf_counter() - started, time.process_time() - cpu


def time_pages(requests):
    from django.contrib.auth import get_user_model
    from django.test import Client

    from app.models import ApiToken

    user = get_user_model().objects.create_user("bench")
    token = ApiToken.issue(user)[1]
    results = {}
    for name, url, headers in (
        ("leaderboard_page", "/leaderboard", {}),
        ("v1_leaderboard", "/v1/leaderboard", {"HTTP_AUTHORIZATION": f"Bearer {token}"}),
    ):
        client = Client()
        for _ in range(5):
            assert client.get(url, **headers).status_code == 200
        times = []
        cpu = time.process_time()
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get(url, **headers)
            times.append(time.perf_counter() - started)
            assert response.status_code == 200
        cpu = time.process_time() - cpu
        times.sort()
        results[name] = {
            "p50_ms": 1000 * statistics.median(times),
            "p95_ms": 1000 * times[int(0.95 * (len(times) - 1))],
            # This process's CPU per request: what the request costs, whatever
            # else the machine runs (wall times above include waiting for a core).
            "cpu_ms": 1000 * cpu / requests,
            "bytes": len(response.content),
        }
    return results


def main():
    args = parse_args()
    setup_django(args.database_url)
    results = {"versions": args.versions, "votes_asked": args.votes}
    results.update(time_fits(args))
    results["fill_s"], results["votes"] = fill(args)
    results["task_s"], results["task_cpu_s"] = time_task()
    results["load"] = " ".join(f"{value:.1f}" for value in os.getloadavg())
    results.update(time_pages(args.requests))
    print(f"{args.versions} versions, {results['votes']:,} votes (1,000 voters, 8% ties)")
    print(
        f"  fit + 200 bootstrap resamples, plain:           {results['fit_plain_s']:.2f} s "
        f"(CPU {results['fit_plain_cpu_s']:.2f} s)"
    )
    print(
        f"  fit + 200 bootstrap resamples, style control:   {results['fit_style_s']:.2f} s "
        f"(CPU {results['fit_style_cpu_s']:.2f} s)"
    )
    print(
        f"  the whole task (read votes, both fits, store):  {results['task_s']:.2f} s "
        f"(CPU of this process {results['task_cpu_s']:.2f} s; PostgreSQL's is apart)"
    )
    for name in ("leaderboard_page", "v1_leaderboard"):
        row = results[name]
        print(
            f"  GET {name:<18} p50 {row['p50_ms']:.1f} ms  p95 {row['p95_ms']:.1f} ms  "
            f"CPU {row['cpu_ms']:.1f} ms/request  ({row['bytes']:,} bytes)"
        )
    print(f"  load average during the run: {results['load']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
