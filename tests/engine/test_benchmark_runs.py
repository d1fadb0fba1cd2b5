"""Benchmark runs through the real worker, broker and Cog server: the CI job
of issue 14 (a new version, a run on it, its results fetched over /v1), and a
worker killed while it starts a run's comparisons leaving nothing stuck."""

import copy
import json

import pytest

from app.models import BenchmarkRun, Prediction, Watch
from app.services import benchmarks, catalog, prompt_sets
from tasks.benchmarks import sweep
from tasks.reconciler import reconcile
from tests.conftest import COG_PREDICTOR_DIR, Worker, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCHEMA = json.loads((COG_PREDICTOR_DIR / ".cog" / "openapi_schema.json").read_text())


def test_a_ci_job_runs_a_benchmark_on_a_new_version_and_fetches_the_results(worker, cog_server, api, alice):
    made = api.post("/v1/prompt-sets", json={"name": "CI", "prompts": ["a red fox", "a blue owl", "a green cat"]})
    assert made.status_code == 201
    # The new build of the model: same server, another schema, so another version.
    changed = copy.deepcopy(SCHEMA)
    changed["info"]["description"] = "build 2"
    version = catalog.add_version("local", "ci-model", "cog", cog_server.url, changed)
    catalog.refresh_availability(version, max_age=0)

    created = api.post(
        "/v1/benchmarks",
        json={"prompt_set": made.json()["id"], "versions": [f"local/ci-model:{version.pk}"], "seeds": [1, 2]},
    )
    assert created.status_code == 201, created.text
    url = created.json()["urls"]["get"]

    def finished():
        run = api.get(url).json()
        return run if run["status"] == "finished" else None

    run = wait_until(finished, timeout=90, interval=0.5, message="the benchmark to finish")
    assert run["progress"]["succeeded"] == 6 and run["progress"]["failed"] == 0
    [row] = run["summary"]
    assert row["failure_rate"] == 0 and row["median_predict_time"] > 0

    results = api.get(run["urls"]["predictions"]).json()["results"]
    assert len(results) == 6
    assert {(r["input"]["prompt"], r["benchmark"]["seed"]) for r in results} == {
        (p, s) for p in ("a red fox", "a blue owl", "a green cat") for s in (1, 2)
    }
    for result in results:
        assert result["status"] == "succeeded" and len(result["output"]) == 1
        image = api.get(result["output"][0])
        assert image.status_code == 200 and image.content[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def killable(worker):
    yield worker
    if worker.process.poll() is not None:
        fresh = Worker(worker.env).start()
        worker.process, worker.log_path = fresh.process, fresh.log_path


def test_a_worker_killed_while_starting_a_run_leaves_nothing_stuck(killable, cog_version, alice, settings):
    # The worker runs with the default limit of 10 predictions at once: it
    # starts 10 comparisons, then waits for them (a countdown on the broker).
    rows = [(f"prompt {i}", "") for i in range(14)]
    run = benchmarks.create(alice, prompt_sets.create(alice, "Fourteen", rows), [cog_version], seeds=[3])
    wait_until(lambda: run.comparisons.count() >= 10, timeout=60, message="the first comparisons")

    assert run.comparisons.count() < 14  # mid-run: the task waits 5 s before it goes on
    killable.kill()  # with the waiting task and the hand-offs it had not made
    fresh = Worker(killable.env).start()
    killable.process, killable.log_path = fresh.process, fresh.log_path

    settings.DISPATCH_DEADLINE = 0.5

    def ended():
        reconcile()  # beat: predictions the dead worker never handed over go again
        sweep()  # beat: the run's comparisons it never started are queued again
        summary = benchmarks.summary(BenchmarkRun.objects.get(pk=run.pk))
        return summary if summary["state"] == "finished" else None

    summary = wait_until(ended, timeout=150, interval=1, message="the run to finish")
    assert summary["succeeded"] == 14 and summary["active"] == 0
    pairs = list(run.comparisons.values_list("benchmark_prompt_id", "seed"))
    assert len(pairs) == len(set(pairs)) == 14
    assert Prediction.objects.filter(comparison__benchmark=run).count() == 14


def test_a_watched_model_s_new_version_runs_the_reference_on_the_worker(worker, cog_server, cog_version, alice):
    rows = [("a red fox", "animals"), ("a teapot", "objects")]
    reference = benchmarks.create(alice, prompt_sets.create(alice, "Two", rows), [cog_version], seeds=[9])
    wait_until(
        lambda: benchmarks.summary(BenchmarkRun.objects.get(pk=reference.pk))["state"] == "finished",
        timeout=60,
        message="the reference run",
    )
    benchmarks.watch(alice, reference, cog_version.model)
    assert Watch.objects.filter(user=alice).count() == 1

    changed = copy.deepcopy(SCHEMA)
    changed["info"]["description"] = "fine-tuned"
    new = catalog.add_version("local", "test-model", "cog", cog_server.url, changed)
    catalog.refresh_availability(new, max_age=0)

    followup = wait_until(
        lambda: BenchmarkRun.objects.filter(baseline=reference).first(),
        timeout=30,
        message="the run on the new version",
    )
    wait_until(
        lambda: benchmarks.summary(BenchmarkRun.objects.get(pk=followup.pk))["state"] == "finished",
        timeout=60,
        message="the new version's run",
    )
    assert list(followup.versions.all()) == [new]
    assert sorted(followup.comparisons.values_list("input__prompt", "seed")) == [("a red fox", 9), ("a teapot", 9)]
    assert alice.notices.get().url == f"/b/{followup.pk}/versus"
