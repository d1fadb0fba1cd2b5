"""The comparison mapping (docs/architecture.md): one input fitted to each version."""

import pytest

from app.core import schema
from app.models import Comparison, Prediction
from app.services import comparisons
from app.services.comparisons import map_input

pytestmark = pytest.mark.django_db(transaction=True)


def by_field(changes):
    return {change["field"]: change for change in changes}


def test_a_value_a_version_accepts_is_kept(sd_version):
    effective, changes = map_input(sd_version, {"prompt": "a fox", "num_inference_steps": 30})

    assert effective["prompt"] == "a fox"
    assert effective["num_inference_steps"] == 30
    assert "num_inference_steps" not in by_field(changes)


def test_an_empty_common_field_gets_each_versions_own_default(sd_version, turbo_version):
    sd, sd_changes = map_input(sd_version, {"prompt": "a fox"})
    turbo, turbo_changes = map_input(turbo_version, {"prompt": "a fox"})

    assert (sd["width"], sd["num_inference_steps"]) == (64, 4)
    assert (turbo["width"], turbo["num_inference_steps"], turbo["guidance_scale"]) == (512, 1, 0.0)
    assert by_field(turbo_changes)["width"]["kind"] == "default"


def test_a_number_outside_a_versions_range_is_brought_to_the_nearest_bound(turbo_version):
    effective, changes = map_input(turbo_version, {"prompt": "a fox", "num_inference_steps": 30, "width": 8})

    assert (effective["num_inference_steps"], effective["width"]) == (4, 16)
    change = by_field(changes)["num_inference_steps"]
    assert (change["kind"], change["given"], change["used"]) == ("replaced", 30, 4)
    assert change["reason"] == "above its maximum 4, the nearest it takes"
    assert by_field(changes)["width"]["reason"] == "below its minimum 16, the nearest it takes"


def test_a_field_a_version_lacks_is_left_out_for_it(turbo_version):
    effective, changes = map_input(turbo_version, {"prompt": "a fox", "negative_prompt": "blurry", "scheduler": "DDIM"})

    assert "negative_prompt" not in effective and "scheduler" not in effective
    assert by_field(changes)["negative_prompt"]["kind"] == "dropped"
    assert by_field(changes)["scheduler"]["kind"] == "dropped"


def test_a_choice_a_version_does_not_offer_is_replaced(sd_version):
    effective, changes = map_input(sd_version, {"prompt": "a fox", "scheduler": "DPMSolverMultistep"})

    assert effective["scheduler"] == "K_EULER"
    assert by_field(changes)["scheduler"]["kind"] == "replaced"


def test_a_comparison_runs_every_version_with_the_same_seed(sd_version, turbo_version, alice, queued):
    comparison = comparisons.start(
        [sd_version, turbo_version], {"prompt": "a fox", "num_inference_steps": 8}, owner=alice
    )

    predictions = list(comparison.predictions.order_by("created_at"))
    assert [p.version for p in predictions] == [sd_version, turbo_version]
    assert {p.input["seed"] for p in predictions} == {comparison.seed}
    assert [p.input["num_inference_steps"] for p in predictions] == [8, 4]
    assert all(p.source == "web" and p.visibility == "unlisted" and p.owner == alice for p in predictions)
    assert comparison.changes[turbo_version.id][0]["field"] == "num_inference_steps"
    assert sorted(queued) == sorted(p.id for p in predictions)  # each queued once, after commit


def test_a_given_seed_is_used_by_all(sd_version, turbo_version):
    comparison = comparisons.start([sd_version, turbo_version], {"prompt": "a fox"}, seed=1234)

    assert comparison.seed == 1234
    assert {p.input["seed"] for p in comparison.predictions.all()} == {1234}


def test_nothing_is_saved_when_one_version_cannot_run(sd_version, turbo_version):
    turbo_version.set_availability(False, "server down")
    turbo_version.checked_at = turbo_version.checked_at.replace(year=2100)
    turbo_version.save()

    with pytest.raises(schema.InputError) as raised:
        comparisons.start([sd_version, turbo_version], {"prompt": "a fox"})

    assert "local/sd-turbo" in raised.value.errors
    assert not Comparison.objects.exists() and not Prediction.objects.exists()


def test_adding_a_version_runs_the_same_input_into_the_same_comparison(sd_version, turbo_version):
    comparison = comparisons.start([sd_version], {"prompt": "a fox", "num_inference_steps": 8})

    prediction = comparisons.add_version(comparison, turbo_version)

    assert prediction.comparison == comparison
    assert prediction.input["seed"] == comparison.seed
    assert prediction.input["num_inference_steps"] == 4
    assert turbo_version.id in comparison.changes


def test_publishing_a_comparison_publishes_its_predictions(sd_version, turbo_version):
    comparison = comparisons.start([sd_version, turbo_version], {"prompt": "a fox"})

    comparison.set_visibility("public")

    assert set(comparison.predictions.values_list("visibility", flat=True)) == {"public"}
