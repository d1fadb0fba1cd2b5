"""Fair scheduling of batch predictions in front of the backends.

A grid's or a benchmark run's predictions (a comparison with `grid` or
`benchmark` set) may be thousands for one user. Sent to the broker at once,
each would retry against a busy model server, and another user's single
prediction would wait in a lottery behind them all. So they are saved held
(`Prediction.queued_at`, status "starting", no message to the broker) and
this module lets them go one by one, each when its target has a free slot:

- a target is where a prediction runs: a Cog server (one slot; every version
  at that location shares it), a version's pool (one slot per instance that
  is up), or a Replicate version (`LIGHTBOX_BATCH_REPLICATE_SLOTS` at once);
- every active prediction not held counts against the target's slots,
  interactive ones waiting for it included, so a batch prediction is never let
  go while an interactive one waits: that one takes the next slot;
- among the held ones the owner with the fewest predictions in flight on the
  target goes first, then the oldest: round-robin across users.

`wake(version)` is called when a prediction ends (`predictions.on_terminal`),
when a batch is saved (`predictions.start_many`), and by the reconciler for
every target with held work, so a lost wake-up never leaves work stuck. The
decision is made under a lock on the target's Version rows, so two wakes
never let go one slot twice.
"""

from datetime import datetime
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min
from django.utils import timezone

from app.core import jobs
from app.models import Instance, Prediction, Version
from app.services import pools


def target(version):
    """(the versions sharing `version`'s slots, how many slots they have)."""
    if version.backend == Version.Backend.REPLICATE:
        return Version.objects.filter(pk=version.pk), settings.BATCH_REPLICATE_SLOTS
    if pools.is_pooled(version):
        # A pool that is down still lets one go: it fails as an interactive
        # one would (tasks.predictions.run_prediction), so nothing waits forever.
        return Version.objects.filter(pk=version.pk), max(1, Instance.objects.up().filter(version=version).count())
    # One Cog server runs one prediction at a time, whatever version it is imported as.
    return Version.objects.filter(backend=Version.Backend.COG, location=version.location), 1


def wake(version, ended=None):
    """Let go as many held predictions of `version`'s target as it has free
    slots, fairly; returns their ids (queued to the broker after commit).
    `ended`: the prediction whose end freed a slot, if one did."""
    versions, slots = target(version)
    batch_ended = ended is not None and ended.queued_at is not None
    if not batch_ended and not Prediction.objects.filter(version__in=versions).held().exists():
        return []  # no batch work here: the queue is the broker's, as before
    with transaction.atomic():
        # Serialises the decision per target: two wakes cannot both take the last
        # slot. no_key: inserting a prediction (a key share on its version) goes on.
        version_ids = list(versions.select_for_update(no_key=True).order_by("pk").values_list("pk", flat=True))
        on_target = Prediction.objects.filter(version_id__in=version_ids)
        in_flight = on_target.active().not_held()
        free = slots - in_flight.count()
        if free <= 0:
            freed = ended is not None and ended.dispatched_at is not None  # it held the server's slot
            if freed and version.backend == Version.Backend.COG and not pools.is_pooled(version):
                _wake_waiting(in_flight)
            return []
        held = on_target.held()
        heads = {row["owner_id"]: row["oldest"] for row in held.values("owner_id").annotate(oldest=Min("created_at"))}
        if not heads:
            return []
        running = {
            row["owner_id"]: row["n"]
            for row in in_flight.filter(owner_id__in=[owner for owner in heads if owner is not None])
            .values("owner_id")
            .annotate(n=Count("pk"))
        }
        now = timezone.now()
        served = {owner: _last_served(on_target, owner) for owner in heads}
        picked = _round_robin(held, heads, running, served, free, now)
        # attempted_at: the reconciler re-sends it if this message is lost.
        released = Prediction.objects.filter(pk__in=picked).held().update(released_at=now, attempted_at=now)
        if released != len(picked):
            # One was canceled meanwhile: let go only those still held.
            picked = list(Prediction.objects.filter(pk__in=picked, released_at=now).values_list("pk", flat=True))
        for prediction_id in picked:
            jobs.after_commit("tasks.predictions.run_prediction", prediction_id, robust=True)
    return picked


def _last_served(on_target, owner):
    """When the scheduler last let one of `owner`'s go on this target (None: never)."""
    return (
        # attempted_at: let go by the scheduler, not canceled while held.
        on_target.filter(owner_id=owner, queued_at__isnull=False, released_at__isnull=False, attempted_at__isnull=False)
        .order_by("-released_at")
        .values_list("released_at", flat=True)
        .first()
    )


def _round_robin(held, heads, running, served, free, now):
    """Up to `free` ids of `held`: each time the owner with the fewest in
    flight, then the one served longest ago (a single slot has none in
    flight when it is freed: this is what makes users take turns), then the
    one whose oldest held prediction is oldest."""
    picked, queues = [], {}
    never = datetime.min.replace(tzinfo=dt_timezone.utc)

    def turn(owner):
        return (running.get(owner, 0), served.get(owner) or never, heads[owner], str(owner))

    while heads and len(picked) < free:
        owner = min(heads, key=turn)
        queue = queues.get(owner)
        if queue is None:
            queue = queues[owner] = list(
                held.filter(owner_id=owner).order_by("created_at", "pk").values_list("pk", "created_at")[:free]
            )
        picked.append(queue.pop(0)[0])
        running[owner] = running.get(owner, 0) + 1
        served[owner] = now
        if queue:
            heads[owner] = queue[0][1]
        else:
            del heads[owner]
    return picked


def _wake_waiting(in_flight):
    """A single-slot Cog server's slot was freed and an interactive prediction
    waits for it (a 409 put it on a timer): hand it over now, rather than when
    its retry comes round, so that it does not lose the slot to a retry's
    lottery. run_prediction is idempotent, so the duplicate message is harmless."""
    waiting = (
        in_flight.filter(dispatched_at__isnull=True, attempted_at__isnull=False)
        .order_by("created_at")
        .values_list("pk", flat=True)
        .first()
    )
    if waiting:
        jobs.after_commit("tasks.predictions.run_prediction", waiting, robust=True)


def wake_all():
    """Wake every target with held work (the reconciler: a lost wake-up, a
    worker killed between a prediction's end and its wake)."""
    version_ids = Prediction.objects.held().values_list("version_id", flat=True).distinct()
    woken, seen = [], set()
    for version in Version.objects.filter(pk__in=list(version_ids)):
        key = (version.backend, version.location) if version.backend == Version.Backend.COG else version.pk
        if key in seen and not pools.is_pooled(version):
            continue
        seen.add(key)
        woken += wake(version)
    return woken


def cancel_held(queryset):
    """Cancel queued work at once: predictions of `queryset` still held end
    canceled without a backend ever hearing of them (a grid or a benchmark
    run stopped). Returns how many; the others are left to predictions.cancel."""
    now = timezone.now()
    return queryset.held().update(status=Prediction.Status.CANCELED, completed_at=now, released_at=now, cost=0)
