"""Did a new run reproduce an old image? Verdicts (identical by pixel hash,
close by mean absolute pixel difference under LIGHTBOX_REPRO_CLOSE, or
different), a comparison re-run on its models' latest versions, and the
reproducibility check of one prediction (a ReproCheck).

Verdicts are settled when someone looks (the page, /v1) or the beat runs:
a new run ends by webhook, and nothing here needs to wait for it.
"""

import random
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from app.core import bundles, schema
from app.models import (
    BenchmarkRun,
    Comparison,
    Grid,
    Prediction,
    ReproCheck,
    Reproduction,
    ReproductionItem,
    Verdict,
    Visibility,
)
from app.services import comparisons, limits, predictions


def _read(field_file):
    with field_file.open("rb") as handle:
        return handle.read()


def _output(prediction, index):
    """The run's stored output `index`, or None."""
    if prediction is None:
        return None
    return next((o for o in prediction.outputs.all() if o.index == index and o.file), None)


def _new_image(prediction, index):
    """The bytes of the new run's output `index`, or None when it has none."""
    output = _output(prediction, index)
    return _read(output.file) if output else None


def _judge(prediction, index, expected_pixels, expected):
    """(verdict, distance) once `prediction` ended, else None."""
    if prediction is None:
        return Verdict.FAILED, None
    if not prediction.is_terminal:
        return None
    actual = _new_image(prediction, index) if prediction.status == Prediction.Status.SUCCEEDED else None
    if actual is None:
        return Verdict.FAILED, None
    try:
        return bundles.verdict(expected_pixels, expected() if expected else None, actual, settings.REPRO_CLOSE)
    except (ValueError, OSError):
        return Verdict.DIFFERENT, None


def settle(reproduction):
    """Judge every item whose new run has ended; returns the items."""
    items = list(
        reproduction.items.select_related("prediction", "expected_output").prefetch_related("prediction__outputs")
    )
    for item in items:
        item.new_output = _output(item.prediction, item.index)
        if item.verdict != Verdict.PENDING:
            continue
        judged = _judge(item.prediction, item.index, item.expected_pixels, _expected_of(item))
        if judged:
            item.verdict, item.distance = judged
            ReproductionItem.objects.filter(pk=item.pk).update(verdict=item.verdict, distance=item.distance)
    return items


def _expected_of(item):
    if item.expected_file:
        return lambda: _read(item.expected_file)
    if item.expected_output and item.expected_output.file:
        return lambda: _read(item.expected_output.file)
    return None


def summary(items):
    """[(verdict, label, how many)] of the verdicts found, in Verdict's order."""
    found = [item.verdict for item in items]
    return [(verdict, label, found.count(verdict)) for verdict, label in Verdict.choices if verdict in found]


# --- Re-run on the latest version ---------------------------------------------


def rerun_on_latest(item, owner):
    """A comparison, grid or benchmark run again with each model's latest
    version: the same inputs and seeds, as `owner`'s new run (a grid or
    benchmark run gets a new row with the new versions), and a Reproduction
    pairing every old image with the new run of its model. Raises
    schema.InputError or limits.RunRefused, saving nothing."""
    rows = [item] if isinstance(item, Comparison) else list(item.comparisons.order_by("created_at"))
    old = {
        row.pk: list(
            row.predictions.filter(status=Prediction.Status.SUCCEEDED)
            .select_related("version__model")
            .prefetch_related("outputs")
            .order_by("created_at")
        )
        for row in rows
    }
    moves = {}
    for prediction in (p for found in old.values() for p in found):
        moves.setdefault(prediction.version_id, prediction.version.model.latest_version)
    if not moves:
        raise schema.InputError({"run": ["It has no succeeded prediction to run again."]})
    mapping = [
        {
            "model": str(latest.model),
            "version": version_id,
            "picked": latest.id,
            "how": "already its latest version: run again on it"
            if latest.id == version_id
            else f"its latest version {latest.id[:12]}",
        }
        for version_id, latest in moves.items()
    ]
    visibility = item.visibility if item.owner_id == owner.pk else Visibility.PRIVATE
    with transaction.atomic():
        parent = _copy_parent(item, owner, moves, visibility)
        reproduction = Reproduction.objects.create(
            owner=owner,
            kind=Reproduction.Kind.LATEST,
            title=(getattr(item, "title", "") or rows[0].prompt)[:200] or item.pk,
            source={"kind": type(item).__name__.lower(), "id": item.pk},
            mapping=mapping,
            grid=parent if isinstance(parent, Grid) else None,
            benchmark=parent if isinstance(parent, BenchmarkRun) else None,
        )
        position = 0
        for row in rows:
            if not old[row.pk]:
                continue
            new = comparisons.start(
                list(dict.fromkeys(moves[p.version_id] for p in old[row.pk])),
                row.input,
                owner=owner,
                visibility=visibility,
                seed=row.seed,
                extra_input={moves[k].id: v for k, v in row.extra_input.items() if k in moves},
            )
            if parent is not None:
                # The new run's cell (or prompt) of the new grid (or benchmark run).
                Comparison.objects.filter(pk=new.pk).update(
                    grid=parent if isinstance(parent, Grid) else None,
                    grid_x=row.grid_x,
                    grid_y=row.grid_y,
                    grid_z=row.grid_z,
                    benchmark=parent if isinstance(parent, BenchmarkRun) else None,
                    benchmark_prompt_id=row.benchmark_prompt_id,
                )
            elif reproduction.comparison_id is None:
                reproduction.comparison = new
                reproduction.save(update_fields=["comparison"])
            runs = {p.version_id: p for p in new.predictions.all()}
            for prediction in old[row.pk]:
                for output in prediction.outputs.all():
                    if not output.file:
                        continue
                    ReproductionItem.objects.create(
                        reproduction=reproduction,
                        position=position,
                        label=f"{prediction.version.model} · {row.prompt[:200]}",
                        source_prediction=prediction.id,
                        expected_output=output,
                        expected_pixels=bundles.pixel_hash(_read(output.file)),
                        prediction=runs.get(moves[prediction.version_id].id),
                        index=output.index,
                    )
                    position += 1
    return reproduction


def _copy_parent(item, owner, moves, visibility):
    """A new grid or benchmark run like `item`, on the latest versions; None for a comparison."""
    if isinstance(item, Grid):
        axes = [
            {**axis, "values": [moves[v].id if v in moves else v for v in axis.get("values", [])]}
            if isinstance(axis, dict) and axis.get("kind") == "version"
            else axis
            for axis in item.axes
        ]
        return Grid.objects.create(
            owner=owner,
            title=f"{item.title or item.pk} (latest versions)"[:200],
            input=item.input,
            extra_input={moves[k].id if k in moves else k: v for k, v in item.extra_input.items()},
            seed=item.seed,
            axes=axes,
            visibility=visibility,
        )
    if isinstance(item, BenchmarkRun):
        run = BenchmarkRun.objects.create(
            owner=owner,
            title=f"{item.title or item.pk} (latest versions)"[:200],
            prompt_set=item.prompt_set,
            category=item.category,
            sample_size=item.sample_size,
            sample_seed=item.sample_seed,
            seeds=item.seeds,
            input=item.input,
            visibility=visibility,
        )
        run.versions.set({latest.id for latest in moves.values()})
        return run
    return None


# --- Reproducibility checks ------------------------------------------------------


def start_check(prediction, owner):
    """Run `prediction` again with its stored input (its seed included), as
    `owner`'s private prediction; the ReproCheck records how it compares.
    Raises schema.InputError or limits.RunRefused, saving nothing."""
    with transaction.atomic():
        rerun = predictions.start(
            prediction.version,
            prediction.input,
            owner=owner,
            source=Prediction.Source.WEB,
            visibility=Visibility.PRIVATE,
        )
        return ReproCheck.objects.create(prediction=prediction, rerun=rerun)


def settle_check(check):
    """Judge a pending check whose re-run ended (against its first output)."""
    if check.verdict != Verdict.PENDING:
        return check
    output = check.prediction.outputs.filter(index=0).first()
    if output is None or not output.file:
        judged = (Verdict.FAILED, None)
    else:
        original = _read(output.file)
        # As it is now: the check may have been loaded while its re-run ran.
        rerun = Prediction.objects.filter(pk=check.rerun_id).prefetch_related("outputs").first()
        judged = _judge(rerun, 0, bundles.pixel_hash(original), lambda: original)
    if judged:
        check.verdict, check.distance = judged
        check.checked_at = timezone.now()
        check.save(update_fields=["verdict", "distance", "checked_at"])
    return check


def last_check(prediction):
    """The newest check of `prediction`, settled if its re-run has ended."""
    check = prediction.repro_checks.select_related("rerun").first()
    return settle_check(check) if check else None


def check_sample(count):
    """The beat's sample (LIGHTBOX_REPRO_CHECK_SAMPLE): settle the checks
    still pending, then run `count` published predictions not checked for a
    week again, each as its owner (whose limits apply). Returns how many started."""
    for check in ReproCheck.objects.pending().select_related("prediction", "rerun")[:500]:
        settle_check(check)
    if count <= 0:
        return 0
    recent = ReproCheck.objects.filter(created_at__gte=timezone.now() - timedelta(days=7)).values("prediction_id")
    candidates = list(
        Prediction.objects.public()
        .filter(status=Prediction.Status.SUCCEEDED, owner__isnull=False, version__available=True)
        .exclude(pk__in=recent)
        .exclude(input__has_key="image")
        .select_related("version__model", "owner")
        .order_by("-created_at")[: count * 10]
    )
    started = 0
    for prediction in random.sample(candidates, min(count, len(candidates))):
        try:
            start_check(prediction, prediction.owner)
            started += 1
        except (schema.InputError, limits.RunRefused):  # skipped; the next run picks others
            continue
    return started
