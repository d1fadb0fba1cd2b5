"""Benchmark runs: versions x prompts (all of a set, a category, or a sample
of N fixed by a seed) x seeds. Each prompt and seed is one comparison across
the versions (comparisons.start, so every check and limit applies).

Creating a run saves one row and queues `tasks.benchmarks.materialise`,
which starts the comparisons in small batches, each under the run's row lock
and skipping those that exist: run again (a worker killed midway, "go on"),
it starts each one once. What a page or /v1 shows is derived from the rows
(`summary`), never from a counter a lost worker could leave behind.
"""

import random
import statistics
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Aggregate, Count, FloatField, Min, Q, Sum
from django.urls import reverse

from app.core import jobs, schema
from app.core.errors import FieldErrors
from app.models import BenchmarkRun, Comparison, Notice, Prediction, Prompt, Version, Watch
from app.services import comparisons, limits, predictions

MAX_SEEDS = 16
MAX_VERSIONS = 8
# Comparisons started per transaction (the run's row stays locked meanwhile).
BATCH = 10
# A limit that frees up within this many seconds is waited for; a longer one stops the run.
MAX_WAIT = 600
# The note of a run that was told to go on, until its task has started again
# what failed or was canceled: till then the run is not finished, whatever its
# rows say (they are all ended), and the beat sweep queues it again if the
# message was lost.
GOING_ON = "Going on: starting again what failed or was canceled."
# Input fields a run takes besides prompt and seed.
INPUT_FIELDS = ("negative_prompt", "width", "height", "num_inference_steps", "guidance_scale", "scheduler")


class RunError(FieldErrors, ValueError):
    """A run that cannot be created."""


def plan(run):
    """The ids of the run's prompts, in the set's order: all, one category, or
    a sample of `sample_size` that `sample_seed` fixes (the same prompts every time)."""
    return plan_prompts(run.prompt_set_id, run.category, run.sample_size, run.sample_seed)


def plan_prompts(prompt_set_id, category, sample_size, sample_seed):
    prompts = Prompt.objects.filter(prompt_set_id=prompt_set_id)
    if category:
        prompts = prompts.filter(category=category)
    ids = list(prompts.order_by("position").values_list("id", flat=True))
    if sample_size and sample_size < len(ids):
        chosen = set(random.Random(sample_seed).sample(ids, sample_size))
        ids = [pk for pk in ids if pk in chosen]
    return ids


def _key(prompt_id, seed):
    return f"{prompt_id}:{seed}"


def _clean_input(given):
    return {field: value for field, value in (given or {}).items() if field in INPUT_FIELDS and value not in (None, "")}


def estimate(owner, versions, prompt_count, seed_count):
    """What the form shows before a run starts: predictions, cost, and the
    owner's limits it would run into."""
    total = prompt_count * seed_count * len(versions)
    per_comparison = sum((limits.estimate_cost(version) for version in versions), Decimal(0))
    cost = per_comparison * prompt_count * seed_count
    notes = []
    if total > settings.BENCHMARK_MAX_PREDICTIONS:
        notes.append(f"over the {settings.BENCHMARK_MAX_PREDICTIONS:,} predictions a run may have")
    if owner is not None and owner.is_authenticated:
        mine = limits.limits_for(owner)
        if mine.per_day is not None and total > mine.per_day:
            notes.append(f"past your daily quota of {mine.per_day:,}: the run stops there, go on the next day")
        if mine.concurrent is not None and total > mine.concurrent:
            notes.append(f"{mine.concurrent} of your predictions run at once; the rest wait their turn")
    return {"predictions": total, "comparisons": prompt_count * seed_count, "cost": cost, "notes": notes}


def create(
    owner,
    prompt_set,
    versions,
    *,
    category="",
    sample_size=None,
    sample_seed=None,
    seeds=None,
    seed_count=1,
    input=None,
    visibility=None,
    title="",
    baseline=None,
):
    """Check everything, save the run and queue its materialisation. Raises
    RunError (per field), saving nothing. Returns at once whatever its size."""
    versions = list(dict.fromkeys(versions))
    errors = {}
    if not versions:
        errors["versions"] = ["Pick at least one model version."]
    elif len(versions) > MAX_VERSIONS:
        errors["versions"] = [f"A run compares at most {MAX_VERSIONS} versions."]
    category = (category or "").strip()
    if category and not prompt_set.prompts.filter(category=category).exists():
        errors["category"] = [f"{prompt_set.name} has no category “{category[:100]}”."]
    if sample_size is not None and (
        isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 1
    ):
        errors["sample_size"] = ["A sample is a whole number of prompts, at least 1."]
    if sample_seed is None:
        sample_seed = random.randrange(2**31)
    elif isinstance(sample_seed, bool) or not isinstance(sample_seed, int) or not 0 <= sample_seed < 2**63:
        errors["sample_seed"] = ["The sample seed is a whole number from 0."]
    if seeds is None:
        if isinstance(seed_count, bool) or not isinstance(seed_count, int) or not 1 <= seed_count <= MAX_SEEDS:
            errors["seeds"] = [f"Run each prompt with 1 to {MAX_SEEDS} seeds."]
        else:
            seeds = random.Random(sample_seed).sample(range(schema.MAX_SEED), seed_count)
    elif (
        not isinstance(seeds, list)
        or not 1 <= len(seeds) <= MAX_SEEDS
        or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= schema.MAX_SEED for s in seeds)
    ):
        errors["seeds"] = [f"Seeds are 1 to {MAX_SEEDS} whole numbers from 0 to {schema.MAX_SEED}."]
    elif len(set(seeds)) != len(seeds):
        errors["seeds"] = ["Each seed once."]
    if not isinstance(input, (dict, type(None))):
        errors["input"] = ["The input is an object of fields (steps, size...)."]
    if errors:
        raise RunError(errors)
    given = _clean_input(input)
    prompt_ids = plan_prompts(prompt_set.pk, category, sample_size, sample_seed)
    if not prompt_ids:
        raise RunError({"prompt_set": ["No prompts to run."]})
    total = len(prompt_ids) * len(seeds) * len(versions)
    if total > settings.BENCHMARK_MAX_PREDICTIONS:
        raise RunError(
            {
                "sample_size": [
                    f"{total:,} predictions: a run may have at most {settings.BENCHMARK_MAX_PREDICTIONS:,}; "
                    "pick a category, a sample or fewer seeds or versions."
                ]
            }
        )
    first = Prompt.objects.get(pk=prompt_ids[0])
    try:
        comparisons.check(versions, {**given, "prompt": first.text}, seeds[0])
    except schema.InputError as exc:
        raise RunError(exc.errors) from None
    with transaction.atomic():
        run = BenchmarkRun.objects.create(
            owner=owner,
            title=(title or "").strip()[:200],
            prompt_set=prompt_set,
            category=category,
            sample_size=sample_size,
            sample_seed=sample_seed,
            seeds=seeds,
            input=given,
            visibility=visibility or BenchmarkRun._meta.get_field("visibility").default,
            planned=len(prompt_ids) * len(seeds),
            baseline=baseline,
        )
        run.versions.set(versions)
        jobs.after_commit("tasks.benchmarks.materialise", run.pk, robust=True)
    return run


def _hold(run_id, note, stop):
    fields = {"note": note[:500]}
    if stop:
        fields["status"] = BenchmarkRun.Status.STOPPED
    BenchmarkRun.objects.filter(pk=run_id).update(**fields)


def materialise(run_id, retry=False):
    """Start what the run lacks: each (prompt, seed) without a comparison and,
    when `retry`, each version whose prediction failed or was canceled.
    Idempotent. Returns None when done (or stopped), or the seconds after
    which to try again (a limit that frees up soon)."""
    run = BenchmarkRun.objects.select_related("owner", "prompt_set").filter(pk=run_id).first()
    if run is None or run.status != BenchmarkRun.Status.RUNNING:
        return None
    versions = sorted(run.versions.select_related("model"), key=lambda v: (str(v.model), v.created_at))
    if retry:
        wait = _retry_failed(run, versions)
        if wait is not None:
            return wait
    prompt_ids = plan(run)
    prompts = Prompt.objects.in_bulk(prompt_ids)
    done = {_key(p, s) for p, s in run.comparisons.values_list("benchmark_prompt_id", "seed")}
    missing = [
        (pk, seed)
        for pk in prompt_ids
        for seed in run.seeds
        if _key(pk, seed) not in done and _key(pk, seed) not in run.skipped
    ]
    for start in range(0, len(missing), BATCH):
        batch = missing[start : start + BATCH]
        with transaction.atomic():
            locked = BenchmarkRun.objects.select_for_update().filter(pk=run.pk).first()
            if locked is None or locked.status != BenchmarkRun.Status.RUNNING:
                return None
            there = {
                _key(p, s)
                for p, s in locked.comparisons.filter(benchmark_prompt_id__in=[pk for pk, _ in batch]).values_list(
                    "benchmark_prompt_id", "seed"
                )
            }
            skipped = dict(locked.skipped)
            for prompt_id, seed in batch:
                if _key(prompt_id, seed) in there:
                    continue
                try:
                    comparisons.start(
                        versions,
                        {**run.input, "prompt": prompts[prompt_id].text},
                        owner=run.owner,
                        visibility=run.visibility,
                        seed=seed,
                        benchmark=locked,
                        benchmark_prompt=prompts[prompt_id],
                    )
                except limits.RunRefused as exc:
                    locked.skipped = skipped
                    locked.save(update_fields=["skipped"])
                    return _refused(run.pk, exc)
                except schema.InputError as exc:
                    offline = [v for v in versions if not v.available]
                    if offline:
                        locked.skipped = skipped
                        locked.save(update_fields=["skipped"])
                        names = ", ".join(str(v.model) for v in offline)
                        _hold(run.pk, f"Stopped: {names} cannot run now; go on once it is back.", stop=True)
                        return None
                    skipped[_key(prompt_id, seed)] = str(exc)[:300]
            locked.skipped = skipped
            locked.save(update_fields=["skipped"])
    # All started: no longer waiting, nor going on (a plain round leaves a
    # pending go-on to the round that retries).
    done = BenchmarkRun.objects.filter(pk=run.pk, status=BenchmarkRun.Status.RUNNING)
    (done if retry else done.exclude(note=GOING_ON)).update(note="")
    return None


def _refused(run_id, exc):
    if exc.status == 429 and exc.retry_after is not None and exc.retry_after <= MAX_WAIT:
        _hold(run_id, f"Waiting: {exc.detail}", stop=False)
        return max(1, int(exc.retry_after))
    _hold(run_id, f"Stopped: {exc.detail}", stop=True)
    return None


def _retry_failed(run, versions):
    """Start again, in the same comparison, each version whose latest
    prediction failed or was canceled."""
    current = _current(Prediction.objects.filter(comparison__benchmark=run))
    ok = set(current.exclude(status__in=("failed", "canceled")).values_list("comparison_id", "version_id"))
    todo = [
        (comparison, version)
        for comparison in run.comparisons.order_by("created_at")
        for version in versions
        if (comparison.pk, version.pk) not in ok
    ]
    for start in range(0, len(todo), BATCH):
        with transaction.atomic():
            locked = BenchmarkRun.objects.select_for_update().filter(pk=run.pk).first()
            if locked is None or locked.status != BenchmarkRun.Status.RUNNING:
                return None
            for comparison, version in todo[start : start + BATCH]:
                running = comparison.predictions.filter(version=version).exclude(status__in=("failed", "canceled"))
                if running.exists():
                    continue
                try:
                    comparisons.add_version(comparison, version)
                except limits.RunRefused as exc:
                    return _refused(run.pk, exc)
                except schema.InputError as exc:
                    _hold(run.pk, f"Stopped: {exc}"[:500], stop=True)
                    return None
    return None


def stop(run):
    """Stop starting comparisons and cancel the predictions still to run;
    returns how many were canceled."""
    BenchmarkRun.objects.filter(pk=run.pk).update(status=BenchmarkRun.Status.STOPPED, note="")
    run.status, run.note = BenchmarkRun.Status.STOPPED, ""
    active = Prediction.objects.filter(comparison__benchmark=run).active().select_related("version__model")
    return sum(1 for prediction in active if predictions.cancel(prediction))


def resume(run):
    """Go on: start what is missing, and again what failed or was canceled."""
    with transaction.atomic():
        BenchmarkRun.objects.filter(pk=run.pk).update(status=BenchmarkRun.Status.RUNNING, note=GOING_ON, skipped={})
        jobs.after_commit("tasks.benchmarks.materialise", run.pk, True, robust=True)
    run.status, run.note, run.skipped = BenchmarkRun.Status.RUNNING, GOING_ON, {}


def set_visibility(run, visibility):
    """Publishing a run publishes its comparisons and their predictions."""
    with transaction.atomic():
        BenchmarkRun.objects.filter(pk=run.pk).update(visibility=visibility)
        Comparison.objects.filter(benchmark=run).update(visibility=visibility)
        Prediction.objects.filter(comparison__benchmark=run).update(visibility=visibility)
    run.visibility = visibility


ENDED = ("succeeded", "failed", "canceled")


def _current(predictions_qs):
    """Each (comparison, version)'s latest prediction only: a version run
    again after a failure has several, and the last one is its result. The
    pairs with several are few (one GROUP BY finds them); the rest is one
    prediction each."""
    repeated = predictions_qs.values("comparison_id", "version_id").annotate(n=Count("pk")).filter(n__gt=1).order_by()
    if not repeated:
        return predictions_qs
    pairs = Q()
    for row in repeated:
        pairs |= Q(comparison_id=row["comparison_id"], version_id=row["version_id"])
    older, seen = [], set()
    for pk, comparison_id, version_id in (
        predictions_qs.filter(pairs).order_by("-created_at").values_list("pk", "comparison_id", "version_id")
    ):
        if (comparison_id, version_id) in seen:
            older.append(pk)
        seen.add((comparison_id, version_id))
    return predictions_qs.exclude(pk__in=older)


def _medians(current, version_ids):
    """{version id: median predict time of its succeeded predictions}, in the
    database on PostgreSQL (percentile_cont), else over the values."""
    succeeded = current.filter(status="succeeded", predict_time__isnull=False)
    if connection.vendor == "postgresql":
        rows = succeeded.values("version_id").annotate(median=Median("predict_time"))
        return {row["version_id"]: row["median"] for row in rows}
    times = {}
    for version_id, seconds in succeeded.values_list("version_id", "predict_time"):
        times.setdefault(version_id, []).append(seconds)
    return {version_id: statistics.median(values) for version_id, values in times.items() if version_id in version_ids}


class Median(Aggregate):
    function = "PERCENTILE_CONT"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


def _planned_per_category(run):
    prompts = Prompt.objects.filter(prompt_set_id=run.prompt_set_id)
    if run.sample_size:
        prompts = Prompt.objects.filter(pk__in=plan(run))
    elif run.category:
        prompts = prompts.filter(category=run.category)
    rows = prompts.values("category").annotate(n=Count("pk")).order_by()
    order = dict(prompts.values("category").annotate(first=Min("position")).order_by().values_list("category", "first"))
    return sorted(((row["category"], row["n"] * len(run.seeds)) for row in rows), key=lambda item: order[item[0]])


def summary(run, versions=None):
    """Progress and results, from the rows (grouped in the database, whatever
    the run's size): per version (done, failed, median predict time, failure
    rate, cost) and per category, and the run's state."""
    versions = versions if versions is not None else versions_of(run)
    all_rows = Prediction.objects.filter(comparison__benchmark=run)
    current = _current(all_rows)
    blank = {"succeeded": 0, "failed": 0, "canceled": 0, "active": 0}
    per_version = {v.pk: dict(blank) for v in versions}
    for row in current.values("version_id", "status").annotate(n=Count("pk")).order_by():
        if row["version_id"] in per_version:
            key = row["status"] if row["status"] in ENDED else "active"
            per_version[row["version_id"]][key] += row["n"]
    categories = {}
    by_category = current.values("comparison__benchmark_prompt__category", "status").annotate(n=Count("pk")).order_by()
    for row in by_category:
        key = row["status"] if row["status"] in ENDED else "active"
        categories.setdefault(row["comparison__benchmark_prompt__category"], dict(blank))[key] += row["n"]
    spent = {
        row["version_id"]: row["total"] or Decimal(0)
        for row in all_rows.values("version_id").annotate(total=Sum("cost")).order_by()
    }
    medians = _medians(current, set(per_version))
    rows = []
    for version in versions:
        entry = per_version[version.pk]
        ended = entry["succeeded"] + entry["failed"]
        rows.append(
            {
                "version": version,
                **entry,
                "median_predict_time": medians.get(version.pk),
                "failure_rate": entry["failed"] / ended if ended else None,
                "cost": spent.get(version.pk, Decimal(0)),
            }
        )
    counts = {key: sum(entry[key] for entry in per_version.values()) for key in blank}
    total = run.planned * len(versions)
    done = counts["succeeded"] + counts["failed"] + counts["canceled"]
    started = run.comparisons.count()
    if run.status == BenchmarkRun.Status.STOPPED:
        state = "stopped"
    elif run.note.startswith("Waiting"):
        state = "waiting"
    elif counts["active"] == 0 and started + len(run.skipped) >= run.planned and run.note != GOING_ON:
        state = "finished"
    else:
        state = "running"
    return {
        "state": state,
        "note": run.note,
        "planned_predictions": total,
        "started_comparisons": started,
        "planned_comparisons": run.planned,
        "skipped": len(run.skipped),
        "done": done,
        "percent": round(100 * done / total) if total else 100,
        **counts,
        "versions": rows,
        "categories": [
            {"category": category or "(none)", "planned": planned * len(versions), **categories.get(category, blank)}
            for category, planned in _planned_per_category(run)
        ],
        "cost": sum((row["cost"] for row in rows), Decimal(0)),
    }


def versions_of(run):
    return sorted(
        run.versions.select_related("model").defer("openapi_schema"), key=lambda v: (str(v.model), v.created_at)
    )


# --- Watching a model ---------------------------------------------------------


def watch(user, run, model):
    """Make `run` the user's reference for `model` (one of the run's versions' models)."""
    if not run.versions.filter(model=model).exists():
        raise RunError({"model": [f"{model} is not in this run."]})
    Watch.objects.update_or_create(user=user, model=model, defaults={"run": run})


def unwatch(user, model):
    Watch.objects.filter(user=user, model=model).delete()


def on_new_version(version_id):
    """A new version of a watched model: run each watcher's reference prompts
    and seeds on it (a run with `baseline` = the reference), and tell them."""
    version = Version.objects.select_related("model").filter(pk=version_id).first()
    if version is None:
        return []
    started = []
    for watched in Watch.objects.filter(model=version.model).select_related("run__prompt_set", "user"):
        reference = watched.run
        if reference.versions.filter(pk=version.pk).exists():
            continue
        if BenchmarkRun.objects.filter(baseline=reference, owner=watched.user, versions=version).exists():
            continue  # this task ran before
        try:
            run = create(
                watched.user,
                reference.prompt_set,
                [version],
                category=reference.category,
                sample_size=reference.sample_size,
                sample_seed=reference.sample_seed,
                seeds=list(reference.seeds),
                input=reference.input,
                visibility=reference.visibility,
                title=f"{version.model} {version.pk[:8]} against {reference.title or reference.pk}"[:200],
                baseline=reference,
            )
        except RunError as exc:
            Notice.objects.create(
                user=watched.user,
                text=f"{version.model} has a new version, but your reference run could not start on it: {exc}"[:1000],
                url=reference.get_absolute_url(),
            )
            continue
        Notice.objects.create(
            user=watched.user,
            text=f"{version.model} has a new version: your reference prompts and seeds are running on it.",
            url=reverse("benchmark-versus", args=[run.pk]),
        )
        started.append(run)
    return started


def versus_version(run):
    """The reference run's version of the same model as `run`'s (new) version."""
    new = run.versions.select_related("model").first()
    if run.baseline_id is None or new is None:
        return None, new
    old = (
        run.baseline.versions.select_related("model").filter(model=new.model).order_by("-created_at").first()
        or run.baseline.versions.select_related("model").first()
    )
    return old, new
