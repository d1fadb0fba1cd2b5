"""Benchmark runs without a worker: creation returns at once, materialising is
idempotent (run again after a kill, each comparison once), stop and go on,
limits, the page (constant queries), publishing, and watching a model."""

import copy

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from app.models import BenchmarkRun, Comparison, Notice, Prediction, PromptSet, Watch
from app.services import benchmarks, catalog, prompt_sets
from tasks.benchmarks import sweep
from tests.benchmarks.conftest import SCHEMA, make_version

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def small_set(alice):
    rows = [(f"prompt {i}", "animals" if i % 2 else "objects") for i in range(12)]
    return prompt_sets.create(alice, "Twelve", rows)


def start(alice, small_set, versions, **options):
    options.setdefault("seeds", [1, 2])
    return benchmarks.create(alice, small_set, versions, **options)


def test_creating_a_run_saves_one_row_and_queues_its_materialisation(alice, small_set, versions, queued_tasks, queued):
    run = start(alice, small_set, versions, category="animals")
    assert run.planned == 6 * 2
    assert queued_tasks["materialise"] == [(run.pk,)]
    assert not Comparison.objects.exists() and queued == []  # nothing started in the request


def test_materialising_starts_each_prompt_and_seed_once_even_run_again(
    alice, small_set, versions, queued_tasks, queued
):
    run = start(alice, small_set, versions)
    assert benchmarks.materialise(run.pk) is None
    assert run.comparisons.count() == 24
    assert Prediction.objects.filter(comparison__benchmark=run, queued_at__isnull=False).count() == 48
    # Held for the fair scheduler: one sent per model server's free slot.
    assert len(queued) == 2
    first = run.comparisons.order_by("benchmark_prompt__position", "seed").first()
    assert (first.input["prompt"], first.seed, first.visibility) == ("prompt 0", 1, "unlisted")
    assert set(first.predictions.values_list("input__seed", flat=True)) == {1}

    benchmarks.materialise(run.pk)  # a second delivery of the task
    assert run.comparisons.count() == 24 and len(queued) == 2
    assert not Comparison.objects.standalone().exists()  # kept out of the gallery's lists


def test_a_worker_killed_midway_leaves_a_run_the_next_task_completes(
    alice, small_set, versions, queued_tasks, queued, monkeypatch
):
    run = start(alice, small_set, versions)
    real_start, started = benchmarks.comparisons.start, []

    def dies_after_seven(*args, **kwargs):
        if len(started) == 7:
            raise SystemExit("killed")  # as a SIGKILL would: mid-batch
        started.append(1)
        return real_start(*args, **kwargs)

    monkeypatch.setattr(benchmarks.comparisons, "start", dies_after_seven)
    with pytest.raises(SystemExit):
        benchmarks.materialise(run.pk)
    kept = run.comparisons.count()
    assert kept == benchmarks.BATCH * (7 // benchmarks.BATCH)  # the batch it died in was rolled back whole
    monkeypatch.setattr(benchmarks.comparisons, "start", real_start)

    benchmarks.materialise(run.pk)
    pairs = list(run.comparisons.values_list("benchmark_prompt_id", "seed"))
    assert len(pairs) == len(set(pairs)) == 24
    assert Prediction.objects.filter(comparison__benchmark=run).count() == 48


def test_a_sample_is_fixed_by_its_seed(alice, shipped, versions, queued_tasks):
    parti = PromptSet.objects.get(slug="partiprompts", owner=None)
    one = benchmarks.create(alice, parti, versions, sample_size=25, sample_seed=7, seeds=[3])
    two = benchmarks.create(alice, parti, versions, sample_size=25, sample_seed=7, seeds=[3])
    other = benchmarks.create(alice, parti, versions, sample_size=25, sample_seed=8, seeds=[3])
    assert benchmarks.plan(one) == benchmarks.plan(two)
    assert len(benchmarks.plan(one)) == 25 and benchmarks.plan(other) != benchmarks.plan(one)
    assert one.planned == 25


def test_bad_runs_are_refused_per_field_and_save_nothing(alice, small_set, versions, queued_tasks, settings):
    settings.BENCHMARK_MAX_PREDICTIONS = 40
    cases = [
        ({"category": "nope"}, "category"),
        ({"sample_size": 0}, "sample_size"),
        ({"seeds": [1, 1]}, "seeds"),
        ({"seeds": ["x"]}, "seeds"),
        ({"seeds": None, "seed_count": 99}, "seeds"),
        ({"seeds": [1, 2]}, "sample_size"),  # 12 x 2 x 2 = 48 > 40
    ]
    for options, field in cases:
        with pytest.raises(benchmarks.RunError) as refused:
            start(alice, small_set, versions, **options)
        assert field in refused.value.errors, (options, refused.value.errors)
    with pytest.raises(benchmarks.RunError) as refused:
        benchmarks.create(alice, small_set, [], seeds=[1])
    assert "versions" in refused.value.errors
    assert not BenchmarkRun.objects.exists() and queued_tasks["materialise"] == []


def test_stop_cancels_what_has_not_run_and_go_on_starts_it_again(alice, small_set, versions, queued_tasks, queued):
    run = start(alice, small_set, versions, category="objects", seeds=[5])
    benchmarks.materialise(run.pk)
    some = Prediction.objects.filter(comparison__benchmark=run).order_by("created_at")
    Prediction.objects.filter(pk__in=[p.pk for p in some[:4]]).update(status="succeeded", predict_time=2.0)
    Prediction.objects.filter(pk=some[4].pk).update(status="failed", error="boom")

    assert benchmarks.stop(run) == 12 - 5
    run.refresh_from_db()
    summary = benchmarks.summary(run)
    assert summary["state"] == "stopped"
    assert (summary["succeeded"], summary["failed"], summary["canceled"], summary["active"]) == (4, 1, 7, 0)
    benchmarks.materialise(run.pk)  # a late task does nothing to a stopped run
    assert Prediction.objects.filter(comparison__benchmark=run).count() == 12

    benchmarks.resume(run)
    assert queued_tasks["materialise"][-1] == (run.pk, True)
    # Every row has ended, but what failed or was canceled is still to start again.
    assert benchmarks.summary(run)["state"] == "running"
    queued_tasks["materialise"].clear()
    sweep()  # the go-on message was lost: the beat sweep sends it again
    assert queued_tasks["materialise"] == [(run.pk, True)]
    benchmarks.materialise(run.pk, retry=True)
    run.refresh_from_db()
    assert run.note == ""
    summary = benchmarks.summary(run)
    assert (summary["succeeded"], summary["failed"], summary["canceled"], summary["active"]) == (4, 0, 0, 8)
    assert summary["state"] == "running"
    benchmarks.materialise(run.pk, retry=True)  # again: nothing more
    assert Prediction.objects.filter(comparison__benchmark=run).active().count() == 8
    rows = {row["version"].model.name: row for row in summary["versions"]}
    assert rows["tiny-sd"]["median_predict_time"] == 2.0


def test_the_at_once_limit_does_not_hold_a_run_back(alice, small_set, versions, queued_tasks, queued, settings):
    # "At once" limits what a user starts by hand; a run's predictions are
    # held and let go a free slot at a time (app.services.scheduling).
    settings.MAX_CONCURRENT = 5
    run = start(alice, small_set, versions, seeds=[1])
    assert benchmarks.materialise(run.pk) is None
    assert run.comparisons.count() == 12
    run.refresh_from_db()
    assert not run.note.startswith("Waiting")


def test_a_limit_that_lasts_stops_the_run_with_the_reason_on_its_page(
    alice, small_set, versions, queued_tasks, queued, settings, client_alice
):
    settings.DAILY_QUOTA = 6
    run = start(alice, small_set, versions, seeds=[1])
    assert benchmarks.materialise(run.pk) is None
    run.refresh_from_db()
    assert run.status == "stopped" and run.comparisons.count() == 3
    assert "used your 6 predictions for today" in run.note
    assert "6 predictions for today" in client_alice.get(run.get_absolute_url()).content.decode()


def test_an_offline_version_stops_the_run_until_it_is_back(alice, small_set, versions, queued_tasks, queued):
    run = start(alice, small_set, versions, seeds=[1])
    versions[1].set_availability(False, "connection refused")
    benchmarks.materialise(run.pk)
    run.refresh_from_db()
    assert run.status == "stopped" and "local/sd-turbo cannot run now" in run.note
    assert run.comparisons.count() == 0


def test_the_page_shows_progress_results_and_images_in_constant_queries(
    alice, small_set, versions, queued_tasks, queued, client_alice
):
    from tests.web.conftest import make_prediction

    run = start(alice, small_set, versions, seeds=[1, 2])
    for comparison_count in (3, 20):
        BenchmarkRun.objects.filter(pk=run.pk).update(planned=24)
        Comparison.objects.filter(benchmark=run).delete()
        for prompt in small_set.prompts.order_by("position")[: comparison_count // 2 + 1]:
            for seed in (1, 2):
                comparison = Comparison.objects.create(
                    owner=alice, benchmark=run, benchmark_prompt=prompt, seed=seed, input={"prompt": prompt.text}
                )
                for version in versions:
                    make_prediction(
                        version, owner=alice, prompt=prompt.text, comparison=comparison, visibility="unlisted"
                    )
        with CaptureQueriesContext(connection) as queries:
            response = client_alice.get(run.get_absolute_url())
        assert response.status_code == 200
        if comparison_count == 3:
            few = len(queries)
        else:
            assert len(queries) == few, "the page's queries grow with its images"
    page = response.content.decode()
    assert "prompt 0" in page and "seed 2" in page
    assert page.count("<img ") == 20 * 2  # one page of 20 prompts x seeds, each on both versions
    assert "Next →" in page and "Prompts 1–20 of 22" in page and "← Previous" not in page
    second = client_alice.get(run.get_absolute_url() + "?page=2").content.decode()
    assert "Prompts 21–22 of 22" in second and "← Previous" in second and "Next →" not in second
    assert second.count("<img ") == 2 * 2
    assert "Median predict time" in page and "1.25 s" in page
    assert "animals" in page and "objects" in page
    assert "unless you publish the run" in page

    # htmx polls the progress alone; a finished run stops the polling (286).
    progress = client_alice.get(run.get_absolute_url() + "?part=progress", HTTP_HX_REQUEST="true")
    assert progress.status_code == 200 and 'id="progress"' in progress.content.decode()


def test_others_see_a_shared_run_but_cannot_act_on_it_and_a_private_one_not_at_all(
    alice, bob, small_set, versions, queued_tasks, client
):
    run = start(alice, small_set, versions, seeds=[1])
    client.force_login(bob)
    assert client.get(run.get_absolute_url()).status_code == 200
    assert b"Go on" not in client.get(run.get_absolute_url()).content
    assert client.post(f"/b/{run.pk}/stop").status_code == 404
    assert client.post(f"/b/{run.pk}/visibility", {"visibility": "public"}).status_code == 404
    BenchmarkRun.objects.filter(pk=run.pk).update(visibility="private")
    assert client.get(run.get_absolute_url()).status_code == 404


def test_publishing_a_run_publishes_its_comparisons_and_predictions(
    alice, small_set, versions, queued_tasks, queued, client_alice
):
    run = start(alice, small_set, versions, seeds=[1], category="animals")
    benchmarks.materialise(run.pk)
    response = client_alice.post(f"/b/{run.pk}/visibility", {"visibility": "public"})
    assert response.status_code == 302
    assert set(Comparison.objects.filter(benchmark=run).values_list("visibility", flat=True)) == {"public"}
    assert set(Prediction.objects.filter(comparison__benchmark=run).values_list("visibility", flat=True)) == {"public"}


def test_the_form_estimates_then_starts_a_run(alice, versions, queued_tasks, client_alice, shipped):
    geneval = PromptSet.objects.get(slug="geneval", owner=None)
    form = {
        "prompt_set": geneval.pk,
        "category": f"{geneval.pk}:counting",
        "sample_size": "10",
        "sample_seed": "4",
        "versions": [v.pk for v in versions],
        "seed_count": "2",
        "num_inference_steps": "2",
        "visibility": "unlisted",
    }
    page = client_alice.get("/b/new").content.decode()
    assert "PartiPrompts" in page and "counting" in page
    estimate = client_alice.post("/b/new", {**form, "action": "estimate"})
    assert estimate.status_code == 200
    assert "Estimate" in estimate.content.decode() and ">40<" in estimate.content.decode()
    assert not BenchmarkRun.objects.exists()
    started = client_alice.post("/b/new", {**form, "action": "start"})
    run = BenchmarkRun.objects.get()
    assert started["Location"] == f"/b/{run.pk}"
    assert (run.category, run.sample_size, run.planned, run.input) == ("counting", 10, 20, {"num_inference_steps": 2})

    parti = PromptSet.objects.get(slug="partiprompts", owner=None)
    wrong = client_alice.post("/b/new", {**form, "category": f"{parti.pk}:Animals", "action": "start"})
    assert wrong.status_code == 422 and "This category is not in GenEval" in wrong.content.decode()
    forged = client_alice.post("/b/new", {**form, "category": "999:counting", "action": "start"})
    assert forged.status_code == 422 and "Select a valid choice" in forged.content.decode()
    none = client_alice.post("/b/new", {**form, "versions": [], "action": "start"})
    assert none.status_code == 422 and "This field is required" in none.content.decode()
    assert BenchmarkRun.objects.count() == 1


def test_a_new_version_of_a_watched_model_reruns_the_reference_side_by_side(
    alice, small_set, versions, queued_tasks, queued, client_alice
):
    reference = start(alice, small_set, versions, category="objects", seeds=[11, 12], title="Baseline")
    benchmarks.materialise(reference.pk)
    Prediction.objects.filter(comparison__benchmark=reference).update(status="succeeded")
    response = client_alice.post(f"/b/{reference.pk}/watch", {"model": versions[0].model_id})
    assert response.status_code == 302
    assert Watch.objects.filter(user=alice, model=versions[0].model, run=reference).exists()

    changed = copy.deepcopy(SCHEMA)
    changed["info"]["description"] = "retrained"
    new = make_version("local", "tiny-sd", changed, location="http://127.0.0.1:9/local/tiny-sd-v2")
    assert queued_tasks["on_new_version"] == [(new.pk,)]
    catalog.add_version("local", "tiny-sd", "cog", new.location, changed)  # the same again: not new
    assert len(queued_tasks["on_new_version"]) == 1

    [run] = benchmarks.on_new_version(new.pk)
    assert benchmarks.on_new_version(new.pk) == []  # the task delivered twice starts one run
    assert run.baseline == reference and list(run.versions.all()) == [new]
    assert (run.seeds, run.category, run.planned) == ([11, 12], "objects", 12)
    notice = Notice.objects.get(user=alice)
    assert notice.url == f"/b/{run.pk}/versus"

    benchmarks.materialise(run.pk)
    page = client_alice.get(notice.url).content.decode()
    assert "the new version against the reference" in page
    assert page.count('class="bench-strip"') == 12
    assert "Reference" in page and "New version" in page


def test_a_watch_is_only_for_a_model_of_the_run(alice, small_set, versions, queued_tasks, client_alice):
    run = start(alice, small_set, versions[:1], seeds=[1])
    client_alice.post(f"/b/{run.pk}/watch", {"model": versions[1].model_id})
    client_alice.post(f"/b/{run.pk}/watch", {"model": "9" * 40})
    assert not Watch.objects.exists()
