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
from app.models import Prediction, ReproCheck, Reproduction, ReproductionItem, Verdict, Visibility
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


def rerun_on_latest(comparison, owner):
    """The comparison's input and seed on each model's latest version, as a
    new comparison of `owner`'s, and a Reproduction pairing every old image
    with the new run of its model. Raises schema.InputError or
    limits.RunRefused, saving nothing."""
    old = list(
        comparison.predictions.filter(status=Prediction.Status.SUCCEEDED)
        .select_related("version__model")
        .prefetch_related("outputs")
        .order_by("created_at")
    )
    moves, mapping = {}, []
    for prediction in old:
        latest = prediction.version.model.latest_version
        moves[prediction.version_id] = latest
        same = latest.id == prediction.version_id
        how = "already its latest version: run again on it" if same else f"its latest version {latest.id[:12]}"
        mapping.append({"model": str(latest.model), "version": prediction.version_id, "picked": latest.id, "how": how})
    if not moves:
        raise schema.InputError({"comparison": ["It has no succeeded prediction to run again."]})
    extra = {moves[k].id: v for k, v in comparison.extra_input.items() if k in moves}
    with transaction.atomic():
        new = comparisons.start(
            list(dict.fromkeys(moves.values())),
            comparison.input,
            owner=owner,
            visibility=comparison.visibility if comparison.owner_id == owner.pk else Visibility.PRIVATE,
            seed=comparison.seed,
            extra_input=extra,
        )
        reproduction = Reproduction.objects.create(
            owner=owner,
            kind=Reproduction.Kind.LATEST,
            title=f"{comparison.prompt[:200]}" or comparison.id,
            source={"kind": "comparison", "id": comparison.id},
            mapping=mapping,
            comparison=new,
        )
        runs = {p.version_id: p for p in new.predictions.all()}
        position = 0
        for prediction in old:
            for output in prediction.outputs.all():
                if not output.file:
                    continue
                ReproductionItem.objects.create(
                    reproduction=reproduction,
                    position=position,
                    label=f"{prediction.version.model} · {moves[prediction.version_id].id[:12]}",
                    source_prediction=prediction.id,
                    expected_output=output,
                    expected_pixels=bundles.pixel_hash(_read(output.file)),
                    prediction=runs.get(moves[prediction.version_id].id),
                    index=output.index,
                )
                position += 1
    return reproduction


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
