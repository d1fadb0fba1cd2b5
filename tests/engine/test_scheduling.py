"""Fair scheduling (app.services.scheduling): a grid's or a benchmark run's
predictions wait held in front of the model server, so another user's single
prediction runs next, not after the whole batch; batch users take turns; the
reconciler never re-sends held work as lost but wakes a target left idle; a
held prediction cancels at once; a worker killed mid-batch leaves nothing stuck."""

import pytest
from django.conf import settings
from django.utils import timezone

from app.core import schema
from app.models import Comparison, Grid, Instance, Prediction, Version
from app.services import comparisons, limits, pools, predictions, scheduling
from tasks.reconciler import reconcile
from tests.conftest import wait_for_status, wait_until
from tests.engine.test_recovery import replace

pytestmark = [pytest.mark.django_db(transaction=True)]

QUICK = {"num_inference_steps": 2, "step_delay": 0.15}


@pytest.fixture
def killable(worker):
    """The session's worker, to kill; a fresh one takes its place afterwards."""
    yield worker
    if worker.process.poll() is not None:
        replace(worker)


def batch(version, owner, count, prefix="cell", **given):
    """A grid of `count` cells on `version` for `owner`, saved through start_many."""
    grid = Grid.objects.create(owner=owner, input={"prompt": prefix})
    cells = [
        comparisons.Cell(
            [version], {"prompt": f"{prefix} {index}", **QUICK, **given}, seed=index, place={"grid_x": index}
        )
        for index in range(count)
    ]
    comparisons.start_many(cells, owner=owner, grid=grid)
    return list(Prediction.objects.filter(comparison__grid=grid).order_by("created_at"))


def started_order(predictions_):
    done = [Prediction.objects.get(pk=p.pk) for p in predictions_]
    return sorted(done, key=lambda p: p.started_at)


# --- Without a worker: what is saved, what is let go -----------------------------


def test_a_batch_is_saved_held_and_only_one_goes_to_a_single_slot_server(queued, cog_version, alice):
    cells = batch(cog_version, alice, 50)

    assert len(cells) == 50 and Comparison.objects.filter(grid__owner=alice).count() == 50
    # Replicate's statuses: a held prediction is "starting", like any not yet running.
    assert {p.status for p in cells} == {"starting"}
    assert [p.input["prompt"] for p in cells] == [f"cell {i}" for i in range(50)]  # the grid's order
    assert queued == [cells[0].pk]  # one message, not fifty: the server has one slot
    assert Prediction.objects.held().count() == 49


def test_interactive_prediction_goes_before_held_batch_work(queued, cog_version, alice, bob):
    cells = batch(cog_version, alice, 5)
    mine = predictions.start(cog_version, {"prompt": "just one", **QUICK}, owner=bob)
    assert queued == [cells[0].pk, mine.pk]
    # Its card says one prediction is ahead of it (the one running), not five.
    assert Prediction.objects.ahead_of(mine).count() == 1

    Prediction.objects.filter(pk=cells[0].pk).update(status="succeeded", completed_at=timezone.now())
    # The slot the batch prediction freed is bob's: no batch prediction is let go.
    assert scheduling.wake(cog_version, ended=cells[0]) == []

    Prediction.objects.filter(pk=mine.pk).update(status="succeeded", completed_at=timezone.now())
    assert scheduling.wake(cog_version) == [cells[1].pk]


def test_batch_users_take_turns_whoever_queued_first(queued, cog_version, alice, bob):
    theirs = {"alice": batch(cog_version, alice, 4, "a"), "bob": batch(cog_version, bob, 4, "b")}
    owners = []
    for _ in range(6):
        [running] = Prediction.objects.active().not_held()
        owners.append(running.owner.username)
        Prediction.objects.filter(pk=running.pk).update(status="succeeded", completed_at=timezone.now())
        scheduling.wake(cog_version, ended=running)
    # Alice queued all of hers first, yet bob's come in turn with hers.
    assert owners == ["alice", "bob", "alice", "bob", "alice", "bob"]
    assert len(theirs["alice"]) == len(theirs["bob"]) == 4


def test_a_pool_takes_one_batch_prediction_per_instance_that_is_up(queued, cog_version, alice):
    urls = [cog_version.location, "http://127.0.0.1:9", "http://127.0.0.1:10"]
    pools.set_instances(cog_version, urls)
    Instance.objects.filter(url=urls[2]).update(up=False)
    Version.objects.filter(pk=cog_version.pk).update(checked_at=timezone.now())  # no health check now

    cells = batch(cog_version, alice, 6)

    assert queued == [cells[0].pk, cells[1].pk]  # two instances up: two slots


def test_a_replicate_version_runs_the_configured_number_of_batch_predictions(queued, sdxl, alice, settings):
    settings.BATCH_REPLICATE_SLOTS = 3
    cells = batch(sdxl, alice, 5)
    assert queued == [p.pk for p in cells[:3]]


def test_the_reconciler_does_not_resend_held_work_but_wakes_an_idle_target(queued, cog_version, alice):
    grid = Grid.objects.create(owner=alice)
    comparison = Comparison.objects.create(owner=alice, grid=grid)
    long_ago = timezone.now() - timezone.timedelta(seconds=10 * settings.DISPATCH_DEADLINE)
    # Saved held, and the wake-up that should follow was lost (a worker killed).
    held = Prediction.objects.bulk_create(
        Prediction(
            version=cog_version,
            owner=alice,
            comparison=comparison,
            input={"prompt": f"p{i}"},
            created_at=long_ago + timezone.timedelta(seconds=i),
            queued_at=long_ago,
        )
        for i in range(3)
    )

    reconcile()

    # Not three "lost" messages: the oldest is let go, the server's one slot.
    assert queued == [held[0].pk]
    assert Prediction.objects.held().count() == 2
    reconcile()
    assert queued == [held[0].pk]  # it is in flight: nothing more until it ends


def test_a_held_prediction_cancels_at_once_and_never_runs(queued, cog_version, alice):
    cells = batch(cog_version, alice, 3)

    assert predictions.cancel(Prediction.objects.get(pk=cells[2].pk))
    comparison = cells[1].comparison
    assert comparisons.cancel(comparison) == 1

    statuses = dict(Prediction.objects.filter(pk__in=[p.pk for p in cells]).values_list("pk", "status"))
    assert statuses == {cells[0].pk: "starting", cells[1].pk: "canceled", cells[2].pk: "canceled"}
    assert not Prediction.objects.held().exists()
    assert queued == [cells[0].pk]  # neither canceled one was ever sent


def test_a_bad_cell_saves_nothing_and_names_the_cell(queued, cog_version, alice):
    grid = Grid.objects.create(owner=alice)
    cells = [
        comparisons.Cell([cog_version], {"prompt": "fine"}),
        comparisons.Cell([cog_version], {"prompt": ["not", "text"]}),
        comparisons.Cell([cog_version], {"prompt": "fine too"}),
    ]
    with pytest.raises(schema.InputError) as caught:
        comparisons.start_many(cells, owner=alice, grid=grid)
    assert list(caught.value.errors) == ["1.local/test-model"]
    assert "prompt" in caught.value.errors["1.local/test-model"][0]
    assert not Comparison.objects.filter(grid=grid).exists() and not Prediction.objects.exists()
    assert queued == []


def test_batch_work_is_admitted_by_the_daily_quota_not_the_rate_or_concurrency(queued, cog_version, alice, settings):
    settings.RATE_LIMIT_PER_MINUTE, settings.MAX_CONCURRENT, settings.DAILY_QUOTA = 5, 2, 30
    batch(cog_version, alice, 20)
    # Held batch work does not keep alice from running one by hand.
    predictions.start(cog_version, {"prompt": "by hand"}, owner=alice)
    with pytest.raises(limits.RunRefused, match="predictions for today"):
        batch(cog_version, alice, 10)
    assert Prediction.objects.filter(owner=alice).count() == 21


# --- With the real worker and Cog server ------------------------------------------


@pytest.mark.e2e
def test_another_users_prediction_starts_before_the_batch_goes_on(worker, cog_version, alice, bob):
    cells = batch(cog_version, alice, 12)
    wait_until(
        lambda: Prediction.objects.filter(pk__in=[p.pk for p in cells], status="succeeded").exists(),
        message="the batch to run",
    )

    mine = predictions.start(cog_version, {"prompt": "just one", **QUICK}, owner=bob)
    mine = wait_for_status(mine.pk)

    assert mine.status == "succeeded", mine.error
    # At most the batch prediction already running when bob's came started before it.
    ahead = Prediction.objects.filter(
        pk__in=[p.pk for p in cells], started_at__gt=mine.created_at, started_at__lt=mine.started_at
    )
    assert ahead.count() <= 1
    assert (
        Prediction.objects.filter(pk__in=[p.pk for p in cells]).active().count() >= 6
    )  # the batch was still far from done
    for cell in cells:
        comparisons.cancel(cell.comparison)


@pytest.mark.e2e
def test_two_batch_users_take_turns_on_the_server(worker, cog_version, alice, bob):
    mine, theirs = batch(cog_version, alice, 4, "a"), batch(cog_version, bob, 4, "b")
    for cell in mine + theirs:
        assert wait_for_status(cell.pk).status == "succeeded"
    owners = [p.owner_id for p in started_order(mine + theirs)]
    assert owners[:4].count(bob.pk) == 2  # bob's started in turn, not after all of alice's


@pytest.mark.e2e
def test_a_lost_wake_up_is_recovered_by_the_reconciler(worker, cog_version, alice, monkeypatch):
    with monkeypatch.context() as patched:
        patched.setattr(scheduling, "wake", lambda *args, **kwargs: [])
        cells = batch(cog_version, alice, 3)
    assert Prediction.objects.held().count() == 3  # nobody was told

    reconcile()

    # The first is let go; each end wakes the next (on the web process).
    for cell in cells:
        assert wait_for_status(cell.pk).status == "succeeded"


@pytest.mark.e2e
def test_a_worker_killed_mid_batch_leaves_nothing_stuck(killable, cog_version, alice, settings):
    settings.DISPATCH_DEADLINE = 1  # the reconciler (this process) re-sends a lost message after 1 s
    cells = batch(cog_version, alice, 5, step_delay=0.3)
    wait_until(
        lambda: Prediction.objects.filter(pk=cells[1].pk).exclude(released_at=None).exists(),
        message="the second to be let go",
    )
    killable.kill()
    replace(killable)

    def all_ended():
        reconcile()
        return not Prediction.objects.filter(pk__in=[p.pk for p in cells]).active().exists()

    wait_until(all_ended, timeout=90, interval=0.5, message="every batch prediction to end")
    assert set(Prediction.objects.filter(pk__in=[p.pk for p in cells]).values_list("status", flat=True)) == {
        "succeeded"
    }
