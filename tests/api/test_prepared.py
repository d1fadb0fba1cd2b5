"""app.core.prepared: the compiled-once queries of the API's hot path give what the
ORM gives, in one query, and refuse querysets they cannot run faithfully."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from app.core.prepared import Prepared
from app.models import ApiToken, Output, Prediction
from app.services import catalog
from app.services.api_json import outputs_of, prediction_json
from app.views.api import PREDICTION


@pytest.fixture
def finished(alice):
    version = catalog.add_version("local", "prepared", "cog", "http://127.0.0.1:9", {}, "0.23.1")
    version.price_per_second = Decimal("0.00025")
    version.save(update_fields=["price_per_second"])
    started = timezone.now() - timedelta(seconds=3)
    prediction = Prediction.objects.create(
        version=version,
        owner=alice,
        input={"prompt": "a lighthouse", "seed": 7},
        status="succeeded",
        started_at=started,
        completed_at=started + timedelta(seconds=2),
        predict_time=1.5,
        logs="step 1/1\n",
    )
    for index in (1, 0):
        Output.objects.create(prediction=prediction, index=index, file=f"outputs/x/{index}.png", width=64, height=64)
    return prediction


def test_a_prepared_query_builds_what_the_orm_builds(finished, django_assert_num_queries):
    orm = Prediction.objects.select_related("version__model").get(pk=finished.pk)
    with django_assert_num_queries(1):
        prepared = PREDICTION.first(finished.pk)
        # The related rows came with it.
        assert str(prepared.version.model) == "local/prepared"
        assert prepared.version.price_per_second == Decimal("0.00025")
    for field in Prediction._meta.concrete_fields:
        assert getattr(prepared, field.attname) == getattr(orm, field.attname), field.name
    assert prepared.started_at.tzinfo is not None
    assert prepared.input == {"prompt": "a lighthouse", "seed": 7}
    assert prediction_json(prepared, "http://x", outputs_of(prepared)) == prediction_json(orm, "http://x")


def test_each_call_runs_with_its_own_arguments(finished, alice):
    other = Prediction.objects.create(version=finished.version, owner=alice, input={"prompt": "a ship"})
    assert PREDICTION.first(other.pk).input == {"prompt": "a ship"}
    assert PREDICTION.first(finished.pk).input["prompt"] == "a lighthouse"
    assert PREDICTION.first("nothing-has-this-id") is None
    assert [output.index for output in outputs_of(finished)] == [0, 1]
    assert outputs_of(other) == []


def test_a_revoked_token_stops_at_once(alice):
    token, raw = ApiToken.issue(alice)
    assert ApiToken.objects.authenticate(raw) == alice
    token.revoke()
    assert ApiToken.objects.authenticate(raw) is None


def test_a_lookup_that_rewrites_its_argument_is_refused(transactional_db):
    # icontains sends "%argument%", not the argument: running the compiled SQL
    # with another value would be wrong, so it is refused outright.
    query = Prepared(lambda text: Prediction.objects.filter(logs__icontains=text))
    with pytest.raises(ValueError, match="once each"):
        query.all("step")
