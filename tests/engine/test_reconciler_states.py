"""Every state a prediction can be left in by a lost message, a killed worker or
a lost webhook is one the reconciler ends: handed over again, or failed with a
clear error once its version's timeout has passed. Before, a prediction
"processing" that was never recorded as handed over (the worker killed right
after the server accepted it; a busy server's lost re-queue) matched neither of
its rules and stayed "processing" for ever."""

from datetime import timedelta

import pytest
from django.utils import timezone

from app.models import Prediction
from app.services import catalog
from tasks.reconciler import reconcile

LONG_AGO = timedelta(hours=1)


@pytest.fixture
def dead_server_version(db):
    """A version whose server does not answer, with a one-second timeout."""
    version = catalog.add_version("local", "gone", "cog", "http://127.0.0.1:9")
    version.timeout = 1
    version.save(update_fields=["timeout"])
    return version


def _left(version, status, dispatched):
    then = timezone.now() - LONG_AGO
    return Prediction.objects.create(
        version=version,
        input={"prompt": "left behind"},
        status=status,
        created_at=then,
        attempted_at=then,
        dispatched_at=then if dispatched else None,
        heard_at=then if dispatched else None,
        remote_id="remote" if dispatched else "",
    )


@pytest.mark.parametrize("status", Prediction.ACTIVE)
def test_a_prediction_never_recorded_as_handed_over_is_handed_over_again(dead_server_version, queued, status):
    prediction = _left(dead_server_version, status, dispatched=False)

    reconcile()

    assert queued == [prediction.id]
    reconcile()  # not again before the dispatch deadline has passed once more
    assert queued == [prediction.id]


@pytest.mark.parametrize("status", Prediction.ACTIVE)
@pytest.mark.parametrize("heard", [True, False])
def test_a_handed_over_prediction_quiet_past_its_timeout_fails_with_the_reason(
    dead_server_version, queued, status, heard
):
    prediction = _left(dead_server_version, status, dispatched=True)
    if not heard:
        Prediction.objects.filter(pk=prediction.pk).update(heard_at=None)

    reconcile()

    prediction.refresh_from_db()
    assert prediction.status == "failed"
    assert "stopped answering" in prediction.error
    assert queued == []
