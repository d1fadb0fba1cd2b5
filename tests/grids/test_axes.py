"""Axis specs as a user types them (app.core.axes): lists, ranges, enums,
prompt search/replace, seeds, and what is refused, with the message shown."""

import pytest

from app.core import axes
from app.core.axes import AxisError

SPECS = {
    "prompt": {"type": "string"},
    "negative_prompt": {"type": "string", "default": ""},
    "num_inference_steps": {"type": "integer", "minimum": 1, "maximum": 100},
    "guidance_scale": {"type": "number", "minimum": 0.0, "maximum": 20.0},
    "scheduler": {"type": "string", "enum": ["DDIM", "K_EULER", "PNDM"]},
    "disable_safety_checker": {"type": "boolean"},
    "image": {"type": "string", "format": "uri"},
}


def values(text, field="guidance_scale", **kw):
    return axes.parse("field", text, field=field, specs=SPECS, **kw)["values"]


@pytest.mark.parametrize(
    "text, field, expected",
    [
        ("7, 7.5, 8", "guidance_scale", [7, 7.5, 8]),
        ("20-40 (+5)", "num_inference_steps", [20, 25, 30, 35, 40]),
        ("1-10 [4]", "num_inference_steps", [1, 4, 7, 10]),
        ("0-1 [5]", "guidance_scale", [0, 0.25, 0.5, 0.75, 1]),
        ("0.1-0.3 (+0.1)", "guidance_scale", [0.1, 0.2, 0.3]),
        ("10-1 (-3)", "num_inference_steps", [10, 7, 4, 1]),
        ("3-5", "num_inference_steps", [3, 4, 5]),
        ("4, 4, 8", "num_inference_steps", [4, 8]),
        ("all", "scheduler", ["DDIM", "K_EULER", "PNDM"]),
        ("ddim, PNDM", "scheduler", ["DDIM", "PNDM"]),
        ("all", "disable_safety_checker", [False, True]),
        ("blurry | ugly, low quality", "negative_prompt", ["blurry", "ugly, low quality"]),
    ],
)
def test_it_reads_lists_ranges_and_choices(text, field, expected):
    assert values(text, field) == expected


@pytest.mark.parametrize(
    "text, field, message",
    [
        ("7, 25", "guidance_scale", "25 is above its maximum 20"),
        ("50-200 (+50)", "num_inference_steps", "150 is above its maximum 100"),
        ("4.5", "num_inference_steps", "not a whole number"),
        ("seven", "guidance_scale", "is not a number"),
        ("1-2", "guidance_scale", "Give a step"),
        ("1-10 (0)", "num_inference_steps", "cannot be 0"),
        ("1-10 (-1)", "num_inference_steps", "never goes from 1 to 10"),
        ("1-100000 (+1)", "num_inference_steps", "at most 1000"),
        ("1-10 [1]", "num_inference_steps", "at least 2"),
        ("1-10 [9999999]", "num_inference_steps", "too many"),
        ("DDIM, EULER_A", "scheduler", "not a choice of scheduler"),
        ("maybe", "disable_safety_checker", "true or false"),
        ("x", "image", "is a file"),
        ("1e999", "guidance_scale", "too large"),
        ("nan", "guidance_scale", "not a number"),
        ("inf", "guidance_scale", "not a number"),
        ("١٢", "num_inference_steps", "not a number"),
        ("", "guidance_scale", "some values"),
        (" , , ", "guidance_scale", "some values"),
    ],
)
def test_it_says_what_is_wrong(text, field, message):
    with pytest.raises(AxisError, match=message):
        values(text, field)


def test_unknown_fields_and_kinds_are_named():
    with pytest.raises(AxisError, match="Unknown field “width”"):
        axes.parse("field", "64", field="width", specs=SPECS)
    with pytest.raises(AxisError, match="Unknown kind"):
        axes.parse("colour", "red")
    with pytest.raises(AxisError, match="Pick the field"):
        axes.parse("field", "1", specs=SPECS)


def test_hostile_text_is_refused_not_crashed():
    with pytest.raises(AxisError, match="at most 2000"):
        values("1," * 5000)
    with pytest.raises(AxisError, match="control characters"):
        values("1\n2")
    with pytest.raises(AxisError, match="as text"):
        axes.parse("field", ["1"], field="guidance_scale", specs=SPECS)
    with pytest.raises(AxisError):
        values("1-2-3")


def test_prompt_search_replace():
    axis = axes.parse("prompt", "fox|cat|owl", prompt="a red fox at dawn")
    assert axis["values"] == ["fox", "cat", "owl"]
    cell, _ = axes.apply({"prompt": "a red fox at dawn"}, [axis], (2,))
    assert cell["prompt"] == "a red owl at dawn"
    with pytest.raises(AxisError, match="“dog” is not in the prompt"):
        axes.parse("prompt", "dog|cat", prompt="a red fox")
    with pytest.raises(AxisError, match="fox\\|cat\\|owl"):
        axes.parse("prompt", "fox", prompt="a red fox")


def test_seeds_list_range_and_random():
    assert axes.parse("seed", "1, 2, 3")["values"] == [1, 2, 3]
    assert axes.parse("seed", "10-20 (+5)")["values"] == [10, 15, 20]
    drawn = axes.parse("seed", "5 random")["values"]
    assert len(drawn) == 5 and all(0 <= s <= axes.MAX_SEED for s in drawn)
    with pytest.raises(AxisError, match="outside 0 to 100"):
        axes.parse("seed", "5, 101", max_seed=100)
    with pytest.raises(AxisError, match="1 to 1000 random"):
        axes.parse("seed", "5000 random")
    # A seed field axis is a seed axis.
    assert axes.parse("field", "7", field="seed", specs=SPECS)["kind"] == "seed"


def test_version_axis_and_combined_checks():
    model = axes.parse("version", versions=[("v1", "tiny-sd"), ("v2", "sd-turbo")])
    assert model["values"] == ["v1", "v2"] and model["labels"] == ["tiny-sd", "sd-turbo"]
    steps = axes.parse("field", "1, 2", field="num_inference_steps", specs=SPECS)
    scale = axes.parse("field", "1, 2, 3", field="guidance_scale", specs=SPECS)
    assert axes.count([model, steps, scale]) == 12
    cell, version = axes.apply({"prompt": "p"}, [model, steps, scale], (1, 0, 2))
    assert version == "v2" and cell == {"prompt": "p", "num_inference_steps": 1, "guidance_scale": 3}
    with pytest.raises(AxisError, match="both change num_inference_steps"):
        axes.check([steps, scale, steps])
    with pytest.raises(AxisError, match="at most 3 axes"):
        axes.check([model, steps, scale, scale])
    with pytest.raises(AxisError, match="at least one model version"):
        axes.parse("version", versions=[])
