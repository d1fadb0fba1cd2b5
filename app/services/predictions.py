"""A prediction's lifecycle: start (validate, check, save, queue), apply what a
backend says, fail, cancel, and what follows the end (cost, the caller's webhook).

The row's state changes all go through `Prediction._transition`, which locks it
and refuses to touch a terminal prediction; this module decides the order of
the steps around it, in plain calls rather than signals: outputs are stored
before the status turns terminal, the cost is settled and the webhook queued
after the terminal commit.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from app.core import jobs, netguard, payloads, schema, uploads
from app.core.logs import without_library_warnings
from app.models import IdempotencyKey, Prediction
from app.services import backends, catalog, files, limits, moderation, pools, scheduling, storage

logger = logging.getLogger(__name__)

WEBHOOK_THROTTLE = timedelta(milliseconds=500)


class KeyReused(Exception):
    """The Idempotency-Key already started a prediction, for another request."""


class AlreadyStarted(Exception):
    """A concurrent request with the same Idempotency-Key started the prediction first."""

    def __init__(self, prediction):
        super().__init__(prediction.pk)
        self.prediction = prediction


def keyed(owner, key, fingerprint):
    """The prediction `owner`'s Idempotency-Key `key` started within its TTL,
    or None. Raises KeyReused when that was for a request other than
    `fingerprint`'s. An expired key is forgotten here (the reconciler sweeps
    the others), so that it can be used again."""
    found = IdempotencyKey.objects.select_related("prediction__version__model").filter(user=owner, key=key).first()
    if found is None:
        return None
    if found.is_expired:
        found.delete()
        return None
    if found.fingerprint != fingerprint:
        raise KeyReused(key)
    return found.prediction


def start(
    version,
    input,
    *,
    owner=None,
    source=Prediction.Source.API,
    visibility=None,
    webhook="",
    webhook_events_filter=(),
    comparison=None,
    deployment=None,
    idempotency=None,
):
    """Validate `input` against the version's schema, save the prediction and
    queue it once the transaction commits. Raises schema.InputError, and
    saves nothing, when the input or the version cannot run.

    `idempotency`, (key, fingerprint) of an API request's Idempotency-Key
    (see `keyed`), is saved with the prediction; when a concurrent request
    with the same key saved its prediction first, nothing is saved and
    AlreadyStarted (or KeyReused, for another request) says which."""
    check_version(version, owner)
    cleaned = check_input(version, input, owner)
    if not catalog.refresh_availability(version):
        raise schema.InputError({"version": [f"{version.model} is unavailable: {version.unavailable_reason}"]})
    visibility = _visibility(visibility, source)
    # A grid's or a benchmark run's: held for the fair scheduler (app.services.scheduling).
    batch = comparison is not None and bool(comparison.grid_id or comparison.benchmark_id)
    try:
        with transaction.atomic():
            # Inside the transaction, so two requests cannot both pass a limit.
            [cost] = limits.admit(owner, [version], batch=batch)
            prediction = Prediction.objects.create(
                version=version,
                input=cleaned,
                owner=owner,
                source=source,
                visibility=visibility,
                webhook=webhook,
                webhook_events_filter=list(webhook_events_filter),
                comparison=comparison,
                deployment=deployment,
                cost=cost,
                queued_at=timezone.now() if batch else None,
            )
            if idempotency:
                # Waits for a concurrent insert of the same key to commit, then fails.
                key, fingerprint = idempotency
                IdempotencyKey.objects.create(user=owner, key=key, fingerprint=fingerprint, prediction=prediction)
            if batch:
                transaction.on_commit(lambda: scheduling.wake(version), robust=True)
            else:
                # robust: with the broker down the prediction is saved all the
                # same, and the reconciler sends it once the broker is back.
                jobs.after_commit("tasks.predictions.run_prediction", prediction.id, robust=True)
    except IntegrityError:
        first = keyed(owner, *idempotency) if idempotency else None
        if first is None:
            raise
        raise AlreadyStarted(first) from None
    return prediction


def check_version(version, owner):
    """Refuse a private model of another account (schema.InputError)."""
    if version.model.visibility == version.model.Visibility.PRIVATE and (
        owner is None or version.model.user_id != owner.pk
    ):
        # Callers look versions up among the models their user may see; this is the rule itself.
        raise schema.InputError({"version": [f"{version.model} is a private model of another account."]})
    catalog.ensure_schema(version)


def check_input(version, input, owner, blocked_terms=None):
    """`input` validated and made ready to send, as `start` saves it; raises
    schema.InputError. The version's own checks are `check_version`'s.
    `blocked_terms`: moderation's blocklist, read once for a batch."""
    cleaned = schema.validate_input(version, input)
    # Files of /v1/files become their content before anything checks URLs.
    cleaned = files.resolve_inputs(version, cleaned, owner)
    moderation.check_input(version, cleaned, owner, terms=blocked_terms)
    netguard.check_input_urls(version, cleaned)
    return uploads.clean_input_images(version, cleaned)


def _visibility(visibility, source):
    if visibility is not None:
        return visibility
    return settings.DEFAULT_WEB_VISIBILITY if source == Prediction.Source.WEB else settings.DEFAULT_API_VISIBILITY


def start_many(items, *, owner=None, source=Prediction.Source.WEB, visibility=None):
    """Save many batch predictions at once, held for the fair scheduler.

    `items`: (version, input, comparison) triples, `input` as `start` takes
    it; each comparison a grid's or a benchmark run's, saved already (the same
    one may appear for several versions). Everything is checked as `start`
    checks it before anything is saved; then, in one transaction, the limits
    admit the whole batch (`limits.admit(batch=True)`) and the predictions are
    bulk-created, held (`queued_at`): no broker message each. Once it commits
    the scheduler is woken once per version. Raises schema.InputError (keys
    "<index>.<field>", the first errors only) or limits.RunRefused, saving
    nothing. Returns the predictions, in the order of `items`.

    Call it inside the transaction that saves the comparisons, so that a
    refusal saves none of them either."""
    items = list(items)
    versions = {version.pk: version for version, _, _ in items}
    errors = {}
    for version in versions.values():
        try:
            check_version(version, owner)
            if not catalog.refresh_availability(version):
                raise schema.InputError({"version": [f"{version.model} is unavailable: {version.unavailable_reason}"]})
        except schema.InputError as exc:
            errors.update({f"{version.model}.{field}": messages for field, messages in exc.errors.items()})
    if errors:
        raise schema.InputError(errors)
    rows = []
    visibility = _visibility(visibility, source)
    now = timezone.now()
    terms = moderation.blocked_terms()
    for index, (version, input, comparison) in enumerate(items):
        # A microsecond apart: the scheduler runs one user's oldest first, so
        # a batch runs in the order it was given (a grid row by row).
        created = now + timedelta(microseconds=index)
        try:
            cleaned = check_input(version, input, owner, blocked_terms=terms)
        except schema.InputError as exc:
            errors.update({f"{index}.{field}": messages for field, messages in exc.errors.items()})
            if len(errors) >= MANY_ERRORS:
                break
            continue
        rows.append(
            Prediction(
                version=version,
                input=cleaned,
                owner=owner,
                source=source,
                visibility=visibility,
                comparison=comparison,
                created_at=created,
                queued_at=created,
            )
        )
    if errors:
        raise schema.InputError(errors)
    with transaction.atomic():
        costs = limits.admit(owner, [row.version for row in rows], batch=True)
        for row, cost in zip(rows, costs):
            row.cost = cost
        Prediction.objects.bulk_create(rows, batch_size=1000)
        for version in versions.values():
            transaction.on_commit(lambda version=version: scheduling.wake(version), robust=True)
    return rows


# Errors start_many reports before it stops checking (a batch of 10,000 bad inputs).
MANY_ERRORS = 20


def apply_update(prediction, update):
    """Apply a backend's view of `prediction` (a webhook or poll).

    `update` is backend-neutral (app.services.backends.Update). Outputs of a
    succeeded update are stored before the status turns terminal.
    """
    if prediction.is_terminal:
        # A run that ended after the prediction did (it was sent again).
        storage.discard_uploads(prediction)
        return False
    Status = Prediction.Status
    if update.error_code == Prediction.ErrorCode.OUTPUT_NOT_RECEIVED and rerun_lost_output(prediction):
        return True
    changes = {"heard_at": timezone.now()}
    logs, warnings = without_library_warnings(_printable(update.logs)) if update.logs else (None, "")
    if logs is not None and len(logs) >= len(prediction.logs):
        changes["logs"] = logs
    if warnings and update.status in Prediction.TERMINAL:
        # Once, with the whole run's logs: webhooks repeat everything so far.
        logger.warning("Library warnings of prediction %s (kept out of its logs):\n%s", prediction.id, warnings)
    if update.status == Status.PROCESSING or update.status in Prediction.TERMINAL:
        if not prediction.started_at:
            changes["started_at"] = timezone.now()
        if prediction.status == Status.STARTING:
            changes["status"] = Status.PROCESSING
    if update.output is not None:
        changes["output"] = update.output
    if update.status in Prediction.TERMINAL:
        if prediction.instance_id:
            pools.release_finished(prediction)
        if update.status == Status.SUCCEEDED:
            try:
                storage.store_outputs(prediction, update.output, logs=update.logs or prediction.logs)
            except storage.NotStored as exc:
                # Whoever applies it (a webhook, a poll, the reconciler): it ends here.
                return fail_storing(prediction, exc)
        # Before the status turns terminal, so that a terminal prediction
        # never has stray uploads.
        storage.discard_uploads(prediction)
        changes.update(
            status=update.status,
            error=_printable(update.error) or "",
            error_code=update.error_code if update.status == Status.FAILED else "",
            completed_at=timezone.now(),
            predict_time=update.predict_time,
        )
    was_starting = prediction.status == Status.STARTING
    changed = prediction._transition(**changes)
    if changed and update.status in Prediction.TERMINAL:
        on_terminal(prediction)
    elif changed:
        events = []
        if was_starting and prediction.status == Status.PROCESSING:
            events.append("start")
        if "logs" in changes and changes["logs"]:
            events.append("logs")
        if "output" in changes:
            events.append("output")
        notify(prediction, events)
    return changed


def fail(prediction, error, code=""):
    storage.discard_uploads(prediction)
    changed = prediction._transition(
        status=Prediction.Status.FAILED, error=error, error_code=code, completed_at=timezone.now()
    )
    if changed:
        on_terminal(prediction)
    return changed


def fail_storing(prediction, exc):
    """End a prediction whose outputs could not be stored (a BackendError
    from storage.store_outputs): failed, with the reason, and none of them kept."""
    code = Prediction.ErrorCode.OUTPUT_NOT_STORED if isinstance(exc, storage.NotStored) else ""
    return fail(prediction, f"Could not store the outputs: {exc}", code=code)


def rerun_lost_output(prediction):
    """Run again, once, a prediction whose model ran but whose server could
    not hand an output over (Cog uploads each output once: our disk was full,
    the web process was restarting). It stays active meanwhile, so a waiting
    client or the caller's webhook only ever see how it ends. False when it
    was run again already (output_reruns): then it fails."""
    storage.discard_uploads(prediction)  # what the first run did upload
    now = timezone.now()
    with transaction.atomic():
        rerun = Prediction.objects.filter(pk=prediction.pk, status__in=Prediction.ACTIVE, output_reruns=0).update(
            output_reruns=1, dispatched_at=None, attempted_at=now, heard_at=now, logs="", output=None
        )
        if rerun:
            # Cog forgets a finished prediction, so the same PUT runs it again.
            # A lost message is sent again by the reconciler (not dispatched).
            jobs.after_commit("tasks.predictions.run_prediction", prediction.id, 0, True, robust=True)
    prediction.refresh_from_db()
    return bool(rerun)


def cancel(prediction):
    """Cancel at the backend (if it has the prediction) and here."""
    if prediction.is_terminal:
        return False
    if prediction.dispatched_at:
        backends.for_version(prediction.version).cancel(prediction)
    storage.discard_uploads(prediction)
    changed = prediction._transition(status=Prediction.Status.CANCELED, completed_at=timezone.now())
    if changed:
        on_terminal(prediction)
    return changed


def on_terminal(prediction):
    """Settle the cost and tell the caller's webhook; runs once, after the
    terminal commit."""
    limits.settle_cost(prediction)
    if prediction.instance_id:
        # Its slot was freed with the terminal commit: the next one may run.
        pools.wake_next(prediction.version)
    # And a held batch prediction may take it, if no other waits for it.
    scheduling.wake(prediction.version, ended=prediction)
    if prediction.webhook and prediction.wants_event("completed"):
        jobs.after_commit("tasks.predictions.send_webhook", prediction.id, "completed")


def notify(prediction, events, task="tasks.predictions.send_webhook"):
    """Send the caller's webhook for non-terminal events (not retried), at
    most one every WEBHOOK_THROTTLE, as Replicate does; `start` always goes.
    A Training's go the same way, by its own `task`."""
    events = [event for event in events if prediction.webhook and prediction.wants_event(event)]
    if not events:
        return
    now = timezone.now()
    throttled = prediction.webhook_sent_at and (now - prediction.webhook_sent_at) < WEBHOOK_THROTTLE
    if throttled and "start" not in events:
        return
    type(prediction).objects.filter(pk=prediction.pk).update(webhook_sent_at=now)
    jobs.after_commit(task, prediction.id, events[0])


def _printable(text):
    """A model's logs or error as we can store and show them: PostgreSQL
    refuses NUL characters, no page can encode a lone surrogate, and a model
    may print anything."""
    return payloads.writable(text) if text else text
