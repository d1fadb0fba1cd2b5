"""The OpenAPI schema of the predictor, as `cog build` would write it.

    python -m inference.schema [--train] [OUT]      (default .cog/openapi_schema.json)

The Cog server validates input against `.cog/openapi_schema.json` in its
working directory (422 with field details, unknown fields dropped) and serves
it at /openapi.json; without the file anything reaches the predictor. cog's
Go CLI normally writes it at build time; this builds it with cog's own Python
inspector. MODEL_ID and MODEL_FAMILY pick the family whose defaults it shows.
"""

import importlib
import json
import os
import sys
from pathlib import Path

from cog import _adt as adt
from cog._inspector import create_predictor

PREDICTOR = ("inference.predict", "Predictor")
# The trainer (Cog's training mode): its inputs and output are TrainingInput
# and TrainingOutput, the names coglet validates a training against.
TRAINER = ("inference.train", "train")


def _input_schema(info, module: str = PREDICTOR[0]) -> tuple[dict, dict]:
    properties, enums, required = {}, {}, []
    for name, field in info.inputs.items():
        prop = {"x-order": field.order}
        if field.choices is not None:
            # As Replicate's schemas do: an enum is its own component.
            prop["allOf"] = [{"$ref": f"#/components/schemas/{name}"}]
            enums[name] = {"title": name, "description": "An enumeration.", "enum": field.choices}
            enums[name].update(field.type.primitive.json_type())
        else:
            prop["title"] = name.replace("_", " ").title()
            prop.update(field.type.json_type())
        if field.default is None:
            if field.type.repetition in (adt.Repetition.REQUIRED, adt.Repetition.REPEATED):
                required.append(name)
        else:
            prop["default"] = field.type.json_encode(field.type.normalize(field.default))
        if field.type.repetition is adt.Repetition.OPTIONAL:
            prop["nullable"] = True
        for key, value in (
            ("description", field.description),
            ("minimum", field.ge),
            ("maximum", field.le),
            ("minLength", field.min_length),
            ("maxLength", field.max_length),
            ("pattern", field.regex),
            ("deprecated", field.deprecated),
        ):
            if value is not None:
                if key in ("minimum", "maximum") and field.type.primitive is adt.PrimitiveType.INTEGER:
                    value = int(value)
                prop[key] = value
        properties[name] = prop
    schema = {"title": "Input", "type": "object", "properties": properties}
    if required:
        schema["required"] = required
    url_inputs = [name for name in getattr(importlib.import_module(module), "URL_INPUTS", ()) if name in properties]
    if url_inputs:
        schema["x-lightbox-url-inputs"] = url_inputs
    return schema, enums


def _response(ref: str) -> dict:
    return {"description": "Successful Response", "content": {"application/json": {"schema": {"$ref": ref}}}}


def openapi_schema(train: bool = False) -> dict:
    """The predictor's schema, or with `train` the trainer's (its own server)."""
    runner = TRAINER if train else PREDICTOR
    info = create_predictor(*runner)
    input_schema, enums = _input_schema(info, runner[0])
    if train:
        return _training_schema(input_schema, enums, info.output.json_type())
    prediction_fields = {
        "input": {"$ref": "#/components/schemas/Input"},
        "output": {"$ref": "#/components/schemas/Output"},
        "id": {"title": "Id", "type": "string"},
        "version": {"title": "Version", "type": "string"},
        "created_at": {"title": "Created At", "type": "string", "format": "date-time"},
        "started_at": {"title": "Started At", "type": "string", "format": "date-time"},
        "completed_at": {"title": "Completed At", "type": "string", "format": "date-time"},
        "status": {"$ref": "#/components/schemas/Status"},
        "error": {"title": "Error", "type": "string"},
        "logs": {"title": "Logs", "type": "string", "default": ""},
        "metrics": {"title": "Metrics", "type": "object"},
    }
    validation_error = {
        "422": {
            "description": "Validation Error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
        }
    }
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {
            "/health-check": {
                "get": {"summary": "Healthcheck", "responses": {"200": {"description": "Successful Response"}}}
            },
            "/predictions": {
                "post": {
                    "summary": "Predict",
                    "description": "Run a single prediction on the model",
                    "requestBody": {
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictionRequest"}}}
                    },
                    "responses": {"200": _response("#/components/schemas/PredictionResponse"), **validation_error},
                }
            },
            "/predictions/{prediction_id}/cancel": {
                "post": {
                    "summary": "Cancel",
                    "parameters": [
                        {
                            "required": True,
                            "schema": {"title": "Prediction Id", "type": "string"},
                            "name": "prediction_id",
                            "in": "path",
                        }
                    ],
                    "responses": {"200": {"description": "Successful Response"}, **validation_error},
                }
            },
        },
        "components": {
            "schemas": {
                "Input": input_schema,
                "Output": info.output.json_type(),
                **enums,
                "PredictionRequest": {
                    "title": "PredictionRequest",
                    "type": "object",
                    "properties": {
                        "id": {"title": "Id", "type": "string"},
                        "input": {"$ref": "#/components/schemas/Input"},
                        "webhook": {"title": "Webhook", "type": "string", "format": "uri"},
                        "webhook_events_filter": {
                            "type": "array",
                            "items": {"type": "string", "enum": ["start", "output", "logs", "completed"]},
                        },
                    },
                },
                "PredictionResponse": {
                    "title": "PredictionResponse",
                    "type": "object",
                    "properties": prediction_fields,
                },
                "Status": {
                    "title": "Status",
                    "description": "An enumeration.",
                    "enum": ["starting", "processing", "succeeded", "canceled", "failed"],
                    "type": "string",
                },
                "HTTPValidationError": {
                    "title": "HTTPValidationError",
                    "type": "object",
                    "properties": {
                        "detail": {
                            "title": "Detail",
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/ValidationError"},
                        }
                    },
                },
                "ValidationError": {
                    "title": "ValidationError",
                    "required": ["loc", "msg", "type"],
                    "type": "object",
                    "properties": {
                        "loc": {
                            "title": "Location",
                            "type": "array",
                            "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                        },
                        "msg": {"title": "Message", "type": "string"},
                        "type": {"title": "Error Type", "type": "string"},
                    },
                },
            }
        },
    }


def _training_schema(input_schema: dict, enums: dict, output: dict) -> dict:
    """The predictor's document with its names changed as cog build writes a
    trainer's: /trainings, TrainingInput, TrainingOutput, Training*."""
    text = json.dumps({**openapi_schema(), "components": {}})
    for old, new in (
        ("/predictions/{prediction_id}", "/trainings/{training_id}"),
        ("/predictions", "/trainings"),
        ("prediction_id", "training_id"),
        ("Prediction Id", "Training Id"),
        ("PredictionRequest", "TrainingRequest"),
        ("PredictionResponse", "TrainingResponse"),
        ("#/components/schemas/Input", "#/components/schemas/TrainingInput"),
        ("#/components/schemas/Output", "#/components/schemas/TrainingOutput"),
        ('"Predict"', '"Train"'),
        ("Run a single prediction on the model", "Run a training"),
    ):
        text = text.replace(old, new)
    schema = json.loads(text)
    predictor = openapi_schema()["components"]["schemas"]
    renamed = json.loads(
        json.dumps({k: v for k, v in predictor.items() if k in ("PredictionRequest", "PredictionResponse")})
        .replace("#/components/schemas/Input", "#/components/schemas/TrainingInput")
        .replace("#/components/schemas/Output", "#/components/schemas/TrainingOutput")
    )
    schema["components"] = {
        "schemas": {
            "TrainingInput": {**input_schema, "title": "TrainingInput"},
            "TrainingOutput": {**output, "title": "TrainingOutput"},
            **enums,
            "TrainingRequest": {**renamed["PredictionRequest"], "title": "TrainingRequest"},
            "TrainingResponse": {**renamed["PredictionResponse"], "title": "TrainingResponse"},
            **{k: predictor[k] for k in ("Status", "HTTPValidationError", "ValidationError")},
        }
    }
    return schema


def write(path, train: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(openapi_schema(train), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def main(argv: list[str]) -> int:
    train = "--train" in argv
    argv = [a for a in argv if a != "--train"]
    print(write(argv[0] if argv else ".cog/openapi_schema.json", train))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
