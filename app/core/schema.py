"""A version's OpenAPI input schema: validation of one input, field by field."""

import secrets

from django.conf import settings
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from app.core import payloads
from app.core.errors import FieldErrors

MAX_SEED = 2**32 - 1
ALLOWED_URI_PREFIXES = ("http://", "https://", "data:")
# Text inputs a model server downloads itself when given a URL (a LoRA), by
# the names models give them: Replicate's schemas and Cog versions imported
# before schemas declared them (x-lightbox-url-inputs) say nothing else.
URL_INPUT_NAMES = frozenset(
    {
        "lora",
        "lora_url",
        "lora_weights",
        "extra_lora",
        "hf_lora",
        "replicate_weights",
        "weights",
        "control_image",
        "controlnet_image",
    }
)


class InputError(FieldErrors):
    """Input that does not fit a version's schema."""


def properties(version):
    return version.input_schema.get("properties", {})


def _resolve(openapi_schema, prop):
    """A property with its allOf/$ref (how Cog writes choices) folded in."""
    merged = dict(prop)
    for part in prop.get("allOf", []):
        ref = part.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            merged.update(openapi_schema.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[1], {}))
    return merged


def field_specs(version):
    """{name: property schema with $refs resolved}, in the schema's x-order."""
    props = properties(version)
    ordered = sorted(props.items(), key=lambda item: item[1].get("x-order", 1000))
    return {name: _resolve(version.openapi_schema, prop) for name, prop in ordered}


def is_file_input(spec):
    """A file: a uri string, or a list of them as Cog writes list[Path]."""
    if spec.get("type") == "array":
        spec = spec.get("items") or {}
    return spec.get("format") == "uri"


def url_inputs(version):
    """{name: spec} of every input that names something a backend fetches:
    files (format uri, which also take data: URIs), and text the version's
    schema lists in `x-lightbox-url-inputs` or that has a name of
    URL_INPUT_NAMES (an http(s) URL or a name the model server knows)."""
    specs = field_specs(version)
    declared = version.input_schema.get("x-lightbox-url-inputs")
    declared = set(declared) if isinstance(declared, list) else set()
    return {
        name: spec
        for name, spec in specs.items()
        if is_file_input(spec)
        or (spec.get("type", "string") == "string" and (name in declared or name in URL_INPUT_NAMES))
    }


def validate_input(version, data):
    """Return the input to run (a seed chosen if the schema has one and none was
    given) or raise InputError. Nothing outside the schema passes."""
    if not isinstance(data, dict):
        raise InputError({"input": ["Input must be a JSON object."]})
    schema = version.input_schema
    if not schema:
        raise InputError({"version": ["This version has no input schema yet; it cannot be run."]})
    props = field_specs(version)
    # null means "not given": Cog marks optional fields by leaving them out.
    cleaned = {key: value for key, value in data.items() if value is not None}
    errors = {}
    for key in cleaned:
        if key not in props:
            errors.setdefault(key, []).append(f"Unknown field. This version accepts: {', '.join(sorted(props))}.")
    document = {"$ref": "#/components/schemas/Input", "components": version.openapi_schema.get("components", {})}
    try:
        validator = Draft202012Validator(document)
        found = sorted(validator.iter_errors(cleaned), key=lambda e: list(e.absolute_path))
    except SchemaError:
        raise InputError({"version": ["This version's input schema is invalid."]})
    for error in found:
        if error.validator == "required":
            missing = [name for name in error.validator_value if name not in cleaned]
            for name in missing:
                errors.setdefault(name, []).append("This field is required.")
        elif error.validator == "additionalProperties":
            continue
        else:
            field = str(error.absolute_path[0]) if error.absolute_path else "input"
            errors.setdefault(field, []).append(_message(error))
    # Per string, so a megabyte prompt cannot make a megabyte page; a
    # schema's own maxLength, when smaller, is checked above.
    max_length = settings.MAX_TEXT_LENGTH
    for key, value in cleaned.items():
        if _has_local_file(props.get(key, {}), value):
            errors.setdefault(key, []).append("Give an http(s) URL or a data: URI.")
        bad = payloads.find_bad_text(value, max_length=None if _names_files(props.get(key, {})) else max_length)
        if bad:
            errors.setdefault(key, []).append(bad[1])
    if errors:
        raise InputError(errors)
    if "seed" in props and "seed" not in cleaned:
        cleaned["seed"] = secrets.randbelow(min(MAX_SEED, props["seed"].get("maximum", MAX_SEED)) + 1)
    return cleaned


def _has_local_file(spec, value):
    """A file input (a uri string, or a list of them as Cog writes list[Path])
    naming anything but an http(s) URL or a data: URI: the model server would
    read a local path or file: URL from its own disk."""
    if spec.get("type") == "array" and isinstance(value, list):
        return any(_has_local_file(spec.get("items", {}), item) for item in value)
    return spec.get("format") == "uri" and isinstance(value, str) and not value.startswith(ALLOWED_URI_PREFIXES)


def _names_files(spec):
    """A file input (data: URIs may be long), or a list of them."""
    return spec.get("format") == "uri" or (spec.get("type") == "array" and _names_files(spec.get("items") or {}))


def _message(error):
    validator, value = error.validator, error.validator_value
    if validator == "minimum":
        return f"Must be at least {value}."
    if validator == "maximum":
        return f"Must be at most {value}."
    if validator == "exclusiveMinimum":
        return f"Must be more than {value}."
    if validator == "exclusiveMaximum":
        return f"Must be less than {value}."
    if validator == "enum":
        return f"Must be one of: {', '.join(map(str, value))}."
    if validator == "type":
        kind = {
            "integer": "a whole number",
            "number": "a number",
            "string": "text",
            "boolean": "true or false",
            "array": "a list",
            "object": "an object",
        }.get(value if isinstance(value, str) else "", str(value))
        return f"Must be {kind}."
    if validator in ("minLength", "maxLength"):
        return f"Length must be {'at least' if validator == 'minLength' else 'at most'} {value}."
    return error.message
