"""The OpenAPI 3.1 document of /v1, served at /v1/openapi.json."""

from app.core import idempotency

PROBLEM = {"$ref": "#/components/responses/Problem"}
MODEL_URLS = ("cover_image_url", "github_url", "paper_url", "license_url", "weights_url")


def _op(
    summary,
    operation_id,
    ok,
    *,
    body=None,
    params=(),
    wait=False,
    ok_status="200",
    body_type="application/json",
    ok_type="application/json",
    extra=(),
    idempotent=False,
):
    """One operation; `ok` None: an answer without a body (204); `extra`:
    more problem statuses it may answer."""
    ok_response = {"description": "OK"}
    if ok is not None:
        ok_response["content"] = {ok_type: {"schema": ok}}
    operation = {
        "summary": summary,
        "operationId": operation_id,
        "security": [{"bearerAuth": []}],
        "parameters": [{"$ref": f"#/components/parameters/{p}"} for p in params],
        "responses": {ok_status: ok_response, "401": PROBLEM, "404": PROBLEM},
    }
    if wait:
        operation["parameters"].append({"$ref": "#/components/parameters/prefer"})
    if idempotent:
        operation["parameters"].append({"$ref": "#/components/parameters/idempotency_key"})
        operation["responses"][ok_status]["headers"] = {
            "Idempotent-Replayed": {
                "description": "'true' when an earlier request with the same Idempotency-Key started the prediction.",
                "schema": {"type": "string", "enum": ["true"]},
            }
        }
        operation["responses"]["409"] = PROBLEM  # the key was used for another request
    if body:
        operation["requestBody"] = {"required": True, "content": {body_type: {"schema": body}}}
        operation["responses"]["400"] = PROBLEM
        operation["responses"]["422"] = PROBLEM
        # Refusals (app.services.limits): spend caps, a suspended account, body size, rate and quotas.
        for status in ("402", "403", "413", "429"):
            operation["responses"][status] = PROBLEM
    for status in extra:
        operation["responses"][status] = PROBLEM
    return operation


def _lightbox(operation):
    """Mark one of Lightbox's own operations, not Replicate's: clients generated
    from Replicate's document never call it, and tools can tell them apart."""
    operation["tags"] = ["lightbox"]
    operation["x-lightbox"] = True
    return operation


def _gone(operation):
    operation["responses"]["410"] = PROBLEM  # hidden by moderators
    return operation


def _ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def document(base_url):
    doc = _replicate_document(base_url)
    _add_lightbox(doc)  # bench
    return doc


def _replicate_document(base_url):
    prediction, page = _ref("Prediction"), _ref("PredictionPage")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Lightbox API",
            "version": "1.0.0",
            "description": "Replicate's HTTP API, served by Lightbox: the official Replicate clients work with "
            "REPLICATE_BASE_URL set to this site.",
        },
        "servers": [{"url": base_url}],
        "paths": {
            "/v1/predictions": {
                "get": _op("List your predictions, newest first", "predictions.list", page, params=["cursor"]),
                "post": _op(
                    "Create a prediction",
                    "predictions.create",
                    prediction,
                    body=_ref("PredictionRequest"),
                    wait=True,
                    ok_status="201",
                    idempotent=True,
                ),
            },
            "/v1/predictions/{prediction_id}": {
                "get": _gone(_op("Get a prediction", "predictions.get", prediction, params=["prediction_id"]))
            },
            "/v1/predictions/{prediction_id}/cancel": {
                "post": _op("Cancel a prediction", "predictions.cancel", prediction, params=["prediction_id"])
            },
            "/v1/models": {
                "get": _op(
                    "List the models you may see (public ones and your own), newest first",
                    "models.list",
                    _ref("ModelPage"),
                    params=["cursor"],
                ),
                "post": _op(
                    "Create a model under your username (Lightbox has no organisations)",
                    "models.create",
                    _ref("Model"),
                    body=_ref("ModelRequest"),
                    ok_status="201",
                    extra=["409"],
                ),
            },
            "/v1/models/{model_owner}/{model_name}": {
                "get": _op("Get a model", "models.get", _ref("Model"), params=["model_owner", "model_name"]),
                "patch": _op(
                    "Update a model of yours",
                    "models.update",
                    _ref("Model"),
                    body=_ref("ModelUpdate"),
                    params=["model_owner", "model_name"],
                ),
                "delete": _op(
                    "Delete a model of yours that has no versions",
                    "models.delete",
                    None,
                    params=["model_owner", "model_name"],
                    ok_status="204",
                    extra=["403", "409"],
                ),
            },
            "/v1/models/{model_owner}/{model_name}/readme": {
                "get": _op(
                    "Get a model's README (Markdown)",
                    "models.readme.get",
                    {"type": "string"},
                    params=["model_owner", "model_name"],
                    ok_type="text/markdown",
                )
            },
            "/v1/models/{model_owner}/{model_name}/examples": {
                "get": _op(
                    "List a model's examples: its owner's public predictions of it",
                    "models.examples.list",
                    page,
                    params=["model_owner", "model_name", "cursor"],
                )
            },
            "/v1/models/{model_owner}/{model_name}/predictions": {
                "post": _op(
                    "Create a prediction on a model's latest version",
                    "models.predictions.create",
                    prediction,
                    body=_ref("ModelPredictionRequest"),
                    params=["model_owner", "model_name"],
                    wait=True,
                    ok_status="201",
                    idempotent=True,
                )
            },
            "/v1/models/{model_owner}/{model_name}/versions": {
                "get": _op(
                    "List a model's versions",
                    "models.versions.list",
                    _ref("VersionPage"),
                    params=["model_owner", "model_name"],
                )
            },
            "/v1/models/{model_owner}/{model_name}/versions/{version_id}": {
                "get": _op(
                    "Get a version",
                    "models.versions.get",
                    _ref("Version"),
                    params=["model_owner", "model_name", "version_id"],
                ),
                "delete": _op(
                    "Delete a version of your model, with your predictions of it (refused while others' use it)",
                    "models.versions.delete",
                    None,
                    params=["model_owner", "model_name", "version_id"],
                    ok_status="204",
                    extra=["403", "409"],
                ),
            },
            "/v1/files": {
                "get": _op("List your files, newest first", "files.list", _ref("FilePage"), params=["cursor"]),
                "post": _op(
                    "Upload a file (an image) to give as a prediction's input",
                    "files.create",
                    _ref("File"),
                    body=_ref("FileRequest"),
                    body_type="multipart/form-data",
                    ok_status="201",
                ),
            },
            "/v1/files/{file_id}": {
                "get": _op("Get a file of yours", "files.get", _ref("File"), params=["file_id"]),
                "delete": _op("Delete a file of yours", "files.delete", None, params=["file_id"], ok_status="204"),
            },
            "/v1/files/{file_id}/download": {
                "get": _op(
                    "Download a file of yours",
                    "files.download",
                    {"type": "string", "format": "binary"},
                    params=["file_id"],
                    ok_type="application/octet-stream",
                )
            },
            "/v1/account": {"get": _op("Get your account", "account.get", _ref("Account"))},
            "/v1/hardware": {
                "get": _op(
                    "List the kinds of model server models and deployments run on",
                    "hardware.list",
                    {"type": "array", "items": _ref("Hardware")},
                )
            },
            "/v1/collections": {"get": _op("List collections of models", "collections.list", _ref("CollectionPage"))},
            "/v1/collections/{collection_slug}": {
                "get": _op(
                    "Get a collection with the models in it you may see",
                    "collections.get",
                    _ref("Collection"),
                    params=["collection_slug"],
                )
            },
            "/v1/deployments": {
                "get": _op(
                    "List your deployments, newest first", "deployments.list", _ref("DeploymentPage"), params=["cursor"]
                ),
                "post": _op(
                    "Create a deployment",
                    "deployments.create",
                    _ref("Deployment"),
                    body=_ref("DeploymentRequest"),
                    ok_status="201",
                ),
            },
            "/v1/deployments/{deployment_owner}/{deployment_name}": {
                "get": _op("Get a deployment", "deployments.get", _ref("Deployment"), params=DEPLOYMENT),
                "patch": _op(
                    "Update a deployment (a new release)",
                    "deployments.update",
                    _ref("Deployment"),
                    body=_ref("DeploymentUpdate"),
                    params=DEPLOYMENT,
                ),
                "delete": _deleted(
                    _op("Delete a deployment with nothing running", "deployments.delete", {}, params=DEPLOYMENT)
                ),
            },
            "/v1/deployments/{deployment_owner}/{deployment_name}/predictions": {
                "post": _op(
                    "Create a prediction on a deployment's pool",
                    "deployments.predictions.create",
                    prediction,
                    body=_ref("ModelPredictionRequest"),
                    params=DEPLOYMENT,
                    wait=True,
                    ok_status="201",
                )
            },
            # Trainings (fine-tuning: trainapi)
            "/v1/models/{model_owner}/{model_name}/versions/{version_id}/trainings": {
                "post": _op(
                    "Fine-tune a version into a new version of a model you own (its destination)",
                    "trainings.create",
                    _ref("Training"),
                    body=_ref("TrainingRequest"),
                    params=["model_owner", "model_name", "version_id"],
                    ok_status="201",
                    extra=["503"],
                )
            },
            "/v1/trainings": {
                "get": _op("List your trainings, newest first", "trainings.list", _page("Training"), params=["cursor"])
            },
            "/v1/trainings/{training_id}": {
                "get": _op("Get a training of yours", "trainings.get", _ref("Training"), params=["training_id"])
            },
            "/v1/trainings/{training_id}/cancel": {
                "post": _op("Cancel a training of yours", "trainings.cancel", _ref("Training"), params=["training_id"])
            },
            "/v1/webhooks/default/secret": {
                "get": _op("Get the secret that signs your webhooks", "webhooks.default.secret.get", _ref("Secret"))
            },
            **_bundle_paths(),
            **grid_paths(),
            **_arena_paths(),
            # --- Lightbox's own operations (docs/protocols.md: "Lightbox's own /v1 operations") ---
            "/v1/comparisons": {
                "get": _lightbox(
                    _op(
                        "List your comparisons, newest first",
                        "comparisons.list",
                        _ref("ComparisonPage"),
                        params=["cursor"],
                    )
                ),
                "post": _lightbox(
                    _op(
                        "Run one input on several versions (one seed for all)",
                        "comparisons.create",
                        _ref("Comparison"),
                        body=_ref("ComparisonRequest"),
                        ok_status="201",
                    )
                ),
            },
            "/v1/comparisons/{comparison_id}": {
                "get": _lightbox(
                    _gone(_op("Get a comparison", "comparisons.get", _ref("Comparison"), params=["comparison_id"]))
                )
            },
            "/v1/comparisons/{comparison_id}/predictions": {
                "get": _lightbox(
                    _gone(
                        _op(
                            "List a comparison's predictions, newest first",
                            "comparisons.predictions.list",
                            page,
                            params=["comparison_id", "cursor"],
                        )
                    )
                )
            },
        },
        "tags": [
            {
                "name": "lightbox",
                "description": "Lightbox's own operations, beside Replicate's: Replicate's clients do not call them.",
            }
        ],
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            "parameters": {
                **{
                    name: {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                    for name in (
                        "prediction_id",
                        "model_owner",
                        "model_name",
                        "version_id",
                        "file_id",
                        "collection_slug",
                        "comparison_id",
                        "training_id",
                        *DEPLOYMENT,
                        *BUNDLE_PARAMS,
                    )
                },
                "cursor": {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
                "prefer": {
                    "name": "Prefer",
                    "in": "header",
                    "required": False,
                    "description": "'wait' or 'wait=N' (N <= 60): hold the request until the prediction ends.",
                    "schema": {"type": "string"},
                },
                "idempotency_key": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "Makes a create safe to retry: the same key with the same request (endpoint and "
                    "body) from the same user within 24 hours answers the prediction the first request started "
                    "(201, with its current state, and 'Idempotent-Replayed: true'), never a second one, even when "
                    "the requests overlap; the same key with a different request answers 409. A key may be quoted "
                    "('\"...\"'); a key that does not match the pattern answers 400.",
                    "schema": {"type": "string", "pattern": idempotency.PATTERN, "maxLength": idempotency.MAX_LENGTH},
                },
            },
            "responses": {
                "Problem": {
                    "description": "An error (RFC 7807)",
                    "content": {"application/problem+json": {"schema": _ref("Problem")}},
                }
            },
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["title", "detail", "status"],
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "detail": {"type": "string"},
                        "status": {"type": "integer"},
                        "invalid_fields": {"type": "array", "items": {"type": "object"}},
                    },
                },
                "TrainingRequest": {
                    "type": "object",
                    "required": ["destination", "input"],
                    "properties": {
                        "destination": {"type": "string", "description": "owner/name: an existing model you own."},
                        "input": {
                            "type": "object",
                            "description": "As Replicate's SDXL trainer: input_images (a zip or tar of images: "
                            "a URL, a data: URI or a /v1/files URL), token_string, max_train_steps, learning_rate, "
                            "lora_rank, resolution, seed, ...",
                        },
                        "webhook": {"type": "string", "format": "uri"},
                        "webhook_events_filter": _request_fields()["webhook_events_filter"],
                    },
                },
                "Training": {
                    "type": "object",
                    "required": ["id", "model", "version", "status", "urls"],
                    "properties": {
                        "id": {"type": "string"},
                        "model": {"type": "string"},
                        "version": {"type": "string"},
                        "destination": {"type": "string"},
                        "input": {"type": "object"},
                        "logs": {"type": "string"},
                        "output": {
                            "type": ["object", "null"],
                            "properties": {"version": {"type": "string"}, "weights": {"type": "string"}},
                        },
                        "error": {"type": ["string", "null"]},
                        "status": {
                            "type": "string",
                            "enum": ["starting", "processing", "succeeded", "failed", "canceled"],
                        },
                        "created_at": {"type": "string"},
                        "started_at": {"type": ["string", "null"]},
                        "completed_at": {"type": ["string", "null"]},
                        "source": {"type": "string"},
                        "metrics": {"type": "object"},
                        "urls": {"type": "object"},
                    },
                },
                "PredictionRequest": {
                    "type": "object",
                    "required": ["version", "input"],
                    "properties": {
                        "version": {"type": "string", "description": "A version id, or owner/name:id."},
                        **_request_fields(),
                    },
                },
                "ModelPredictionRequest": {
                    "type": "object",
                    "required": ["input"],
                    "properties": _request_fields(),
                },
                "Prediction": {
                    "type": "object",
                    "required": ["id", "model", "version", "input", "status", "created_at", "urls"],
                    "properties": {
                        "id": {"type": "string"},
                        "model": {"type": "string"},
                        "version": {"type": "string"},
                        "input": {"type": "object"},
                        "output": {"type": ["array", "null"], "items": {"type": "string", "format": "uri"}},
                        "logs": {"type": "string"},
                        "error": {"type": ["string", "null"]},
                        "data_removed": {"type": "boolean"},
                        "status": {
                            "type": "string",
                            "enum": ["starting", "processing", "succeeded", "failed", "canceled"],
                        },
                        "source": {"type": "string", "enum": ["web", "api"]},
                        "visibility": {"type": "string", "enum": ["public", "unlisted", "private"]},
                        "created_at": {"type": "string", "format": "date-time"},
                        "started_at": {"type": ["string", "null"], "format": "date-time"},
                        "completed_at": {"type": ["string", "null"], "format": "date-time"},
                        "metrics": {
                            "type": "object",
                            "properties": {"predict_time": {"type": "number"}, "total_time": {"type": "number"}},
                        },
                        "urls": {
                            "type": "object",
                            "properties": {
                                "get": {"type": "string"},
                                "cancel": {"type": "string"},
                                "web": {"type": "string"},
                            },
                        },
                        "moderation": {
                            "type": "object",
                            "description": "Only on a hidden prediction (its owner and moderators see it).",
                            "properties": {"hidden": {"type": "boolean"}, "reason": {"type": "string"}},
                        },
                    },
                },
                "PredictionPage": _page("Prediction"),
                "ComparisonRequest": {
                    "type": "object",
                    "required": ["versions", "input"],
                    "properties": {
                        "versions": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 10,
                            "items": {"type": "string", "description": "A version id, or owner/name:id."},
                        },
                        "input": {
                            "type": "object",
                            "description": "Mapped to each version's input schema as the playground maps it "
                            "(the changes are listed per version).",
                        },
                        "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
                        "visibility": {"type": "string", "enum": ["public", "unlisted", "private"]},
                    },
                },
                "Comparison": {
                    "type": "object",
                    "required": ["id", "input", "seed", "predictions", "created_at", "urls"],
                    "properties": {
                        "id": {"type": "string"},
                        "input": {"type": "object"},
                        "seed": {"type": ["integer", "null"]},
                        "extra_input": {"type": "object"},
                        "changes": {"type": "object", "description": "Per version id, what the mapping changed."},
                        "visibility": {"type": "string", "enum": ["public", "unlisted", "private"]},
                        "created_at": {"type": "string", "format": "date-time"},
                        "grid": {"type": ["string", "null"]},
                        "benchmark": {"type": ["string", "null"]},
                        "predictions": {"type": "array", "items": prediction},
                        "urls": {
                            "type": "object",
                            "properties": {
                                "get": {"type": "string"},
                                "predictions": {"type": "string"},
                                "web": {"type": "string"},
                            },
                        },
                    },
                },
                "ComparisonPage": _page("Comparison"),
                "VersionPage": _page("Version"),
                "Version": {
                    "type": "object",
                    "required": ["id", "created_at", "cog_version", "openapi_schema"],
                    "properties": {
                        "id": {"type": "string"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "cog_version": {"type": "string"},
                        "openapi_schema": {"type": "object"},
                    },
                },
                "Model": {
                    "type": "object",
                    "required": ["url", "owner", "name", "visibility", "run_count"],
                    "properties": {
                        "url": {"type": "string"},
                        "owner": {"type": "string"},
                        "name": {"type": "string"},
                        "description": {"type": ["string", "null"]},
                        "visibility": {"type": "string", "enum": ["public", "private"]},
                        "run_count": {"type": "integer"},
                        "cover_image_url": {"type": ["string", "null"]},
                        **{key: {"type": ["string", "null"]} for key in MODEL_URLS[1:]},
                        "default_example": {"oneOf": [prediction, {"type": "null"}]},
                        "latest_version": {"oneOf": [_ref("Version"), {"type": "null"}]},
                    },
                },
                "DeploymentPage": _page("Deployment"),
                "Deployment": _deployment(),
                "DeploymentRequest": {
                    "type": "object",
                    "required": ["name", "model", "version", "hardware", "min_instances", "max_instances"],
                    "properties": {
                        "name": {"type": "string"},
                        "model": {"type": "string", "description": "owner/name"},
                        **_deployment_fields(),
                    },
                },
                "DeploymentUpdate": {"type": "object", "properties": _deployment_fields()},
                "ModelPage": _page("Model"),
                "ModelRequest": {
                    "type": "object",
                    "required": ["owner", "name", "visibility", "hardware"],
                    "properties": {
                        "owner": {"type": "string", "description": "Your username."},
                        "name": {"type": "string", "pattern": "^[a-z0-9]([a-z0-9_.-]{0,98}[a-z0-9])?$"},
                        "visibility": {"type": "string", "enum": ["public", "private"]},
                        "hardware": {"type": "string", "description": "A sku of GET /v1/hardware."},
                        "description": {"type": "string"},
                        **{key: {"type": "string", "format": "uri"} for key in MODEL_URLS[:4]},
                    },
                },
                "ModelUpdate": {
                    "type": "object",
                    "properties": {
                        "description": {"type": "string"},
                        "readme": {"type": "string"},
                        **{key: {"type": "string", "format": "uri"} for key in MODEL_URLS[1:]},
                    },
                },
                **BUNDLE_SCHEMAS,
                **grid_schemas(),
                "FileRequest": {
                    "type": "object",
                    "required": ["content"],
                    "properties": {
                        "content": {"type": "string", "format": "binary", "description": "An image."},
                        "filename": {"type": "string", "maxLength": 255},
                        "type": {"type": "string", "description": "Ignored: the type is told by the content."},
                        "metadata": {"type": "object"},
                    },
                },
                "File": {
                    "type": "object",
                    "required": ["id", "urls", "content_type", "size", "checksums", "metadata", "created_at"],
                    "properties": {
                        "id": {"type": "string"},
                        "name": {"type": "string"},
                        "content_type": {"type": "string"},
                        "size": {"type": "integer"},
                        "etag": {"type": "string"},
                        "checksums": {"type": "object", "properties": {"sha256": {"type": "string"}}},
                        "metadata": {"type": "object"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "expires_at": {"type": "string", "format": "date-time"},
                        "urls": {
                            "type": "object",
                            "properties": {
                                "get": {"type": "string", "description": "Give this as a prediction's file input."}
                            },
                        },
                    },
                },
                "FilePage": _page("File"),
                "Account": {
                    "type": "object",
                    "required": ["type", "username", "name"],
                    "properties": {
                        "type": {"type": "string", "enum": ["user", "organization"]},
                        "username": {"type": "string"},
                        "name": {"type": "string"},
                        "github_url": {"type": ["string", "null"]},
                    },
                },
                "Hardware": {
                    "type": "object",
                    "required": ["sku", "name"],
                    "properties": {"sku": {"type": "string"}, "name": {"type": "string"}},
                },
                "Collection": {
                    "type": "object",
                    "required": ["name", "slug", "description"],
                    "properties": {
                        "name": {"type": "string"},
                        "slug": {"type": "string"},
                        "description": {"type": "string"},
                        "full_description": {"type": ["string", "null"]},
                        "models": {"type": "array", "items": _ref("Model")},
                    },
                },
                "CollectionPage": _page("Collection"),
                "Secret": {"type": "object", "required": ["key"], "properties": {"key": {"type": "string"}}},
            },
        },
    }


DEPLOYMENT = ["deployment_owner", "deployment_name"]


def _deleted(operation):
    operation["responses"]["204"] = {"description": "Deleted"}
    del operation["responses"]["200"]
    operation["responses"]["409"] = PROBLEM  # predictions running or waiting
    return operation


def _deployment_fields():
    return {
        "version": {"type": "string", "description": "A version id of the model."},
        "hardware": {"type": "string", "description": "A sku of GET /v1/hardware."},
        "min_instances": {"type": "integer", "minimum": 0, "maximum": 5},
        "max_instances": {"type": "integer", "minimum": 1, "maximum": 20},
    }


def _deployment():
    configuration = {
        "type": "object",
        "properties": {
            "hardware": {"type": "string"},
            "min_instances": {"type": "integer"},
            "max_instances": {"type": "integer"},
        },
    }
    release = {
        "type": "object",
        "properties": {
            "number": {"type": "integer"},
            "model": {"type": "string"},
            "version": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "created_by": {"type": "object", "required": ["type", "username"]},
            "configuration": configuration,
        },
    }
    return {
        "type": "object",
        "required": ["owner", "name", "current_release"],
        "properties": {"owner": {"type": "string"}, "name": {"type": "string"}, "current_release": release},
    }


def _request_fields():
    return {
        "input": {"type": "object", "description": "Validated against the version's input schema."},
        "webhook": {"type": "string", "format": "uri"},
        "webhook_events_filter": {
            "type": "array",
            "items": {"type": "string", "enum": ["start", "output", "logs", "completed"]},
        },
        "visibility": {"type": "string", "enum": ["public", "unlisted", "private"]},
    }


def _page(item):
    return {
        "type": "object",
        "required": ["next", "previous", "results"],
        "properties": {
            "next": {"type": ["string", "null"]},
            "previous": {"type": ["string", "null"]},
            "results": {"type": "array", "items": _ref(item)},
        },
    }


# --- Reproducibility bundles: Lightbox's own extension of Replicate's API (docs/bundles.md) ---

BUNDLE_PARAMS = ("comparison_id", "grid_id", "benchmark_id", "reproduction_id")
ZIP = {"type": "string", "format": "binary"}


def _bundle_paths():
    def download(what, operation_id, param):
        return {
            "get": _lightbox(
                _gone(
                    _op(
                        f"Download a reproducibility bundle of a {what} (zip: manifest.json and the PNGs)",
                        operation_id,
                        ZIP,
                        params=[param],
                        ok_type="application/zip",
                    )
                )
            )
        }

    return {
        "/v1/predictions/{prediction_id}/bundle": download("prediction", "predictions.bundle", "prediction_id"),
        "/v1/comparisons/{comparison_id}/bundle": download("comparison", "comparisons.bundle", "comparison_id"),
        "/v1/grids/{grid_id}/bundle": download("grid", "grids.bundle", "grid_id"),
        "/v1/benchmarks/{benchmark_id}/bundle": download("benchmark run", "benchmarks.bundle", "benchmark_id"),
        "/v1/bundles": {
            "post": _lightbox(
                _op(
                    "Import a bundle: its runs start again as yours; each image gets a verdict once they end",
                    "bundles.create",
                    _ref("Reproduction"),
                    body=_ref("BundleRequest"),
                    body_type="multipart/form-data",
                    ok_status="201",
                )
            )
        },
        "/v1/bundles/{reproduction_id}": {
            "get": _lightbox(
                _op(
                    "Get a bundle you imported: versions mapped, what did not run, each image's verdict",
                    "bundles.get",
                    _ref("Reproduction"),
                    params=["reproduction_id"],
                )
            )
        },
    }


BUNDLE_SCHEMAS = {
    "BundleRequest": {
        "type": "object",
        "required": ["bundle"],
        "properties": {"bundle": {**ZIP, "description": "The bundle (zip) to import."}},
    },
    "Reproduction": {
        "type": "object",
        "required": ["id", "kind", "versions", "skipped", "items", "urls"],
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string", "enum": ["import", "latest"]},
            "title": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "source": {"type": "object"},
            "versions": {"type": "array", "items": {"type": "object"}},
            "skipped": {
                "type": "array",
                "items": {"type": "object", "properties": {"what": {"type": "string"}, "why": {"type": "string"}}},
            },
            "comparison": {"type": ["string", "null"]},
            "grid": {"type": ["string", "null"]},
            "benchmark": {"type": ["string", "null"]},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "position": {"type": "integer"},
                        "source_prediction": {"type": "string"},
                        "prediction": {"type": ["string", "null"]},
                        "index": {"type": "integer"},
                        "expected_pixel_sha256": {"type": "string"},
                        "verdict": {"type": "string", "enum": ["pending", "identical", "close", "different", "failed"]},
                        "distance": {"type": ["number", "null"]},
                    },
                },
            },
            "urls": {"type": "object"},
        },
    },
}


def _add_lightbox(doc):
    run, run_param = _ref("BenchmarkRun"), ["run_id"]
    doc["paths"].update(
        {
            "/v1/prompt-sets": {
                "get": _lightbox(_op("List the prompt sets you can run", "prompt_sets.list", _ref("PromptSetList"))),
                "post": _lightbox(
                    _op(
                        "Add a prompt set of your own",
                        "prompt_sets.create",
                        _ref("PromptSet"),
                        body=_ref("PromptSetRequest"),
                        ok_status="201",
                    )
                ),
            },
            "/v1/benchmarks": {
                "get": _lightbox(
                    _op(
                        "List your benchmark runs, newest first",
                        "benchmarks.list",
                        _ref("BenchmarkRunPage"),
                        params=["cursor"],
                    )
                ),
                "post": _lightbox(
                    _op(
                        "Start a benchmark run (returns at once; it runs in the background)",
                        "benchmarks.create",
                        run,
                        body=_ref("BenchmarkRunRequest"),
                        ok_status="201",
                    )
                ),
            },
            "/v1/benchmarks/{run_id}": {
                "get": _lightbox(
                    _gone(
                        _op(
                            "Get a benchmark run: progress and per-version summary",
                            "benchmarks.get",
                            run,
                            params=run_param,
                        )
                    )
                )
            },
            "/v1/benchmarks/{run_id}/predictions": {
                "get": _lightbox(
                    _gone(
                        _op(
                            "List a benchmark run's predictions, newest first",
                            "benchmarks.predictions.list",
                            _ref("PredictionPage"),
                            params=[*run_param, "cursor"],
                        )
                    )
                )
            },
            "/v1/benchmarks/{run_id}/stop": {
                "post": _lightbox(
                    _op("Stop a benchmark run (cancels what has not run)", "benchmarks.stop", run, params=run_param)
                )
            },
            "/v1/benchmarks/{run_id}/resume": {
                "post": _lightbox(
                    _op(
                        "Go on with a benchmark run (starts what is missing, failed or canceled)",
                        "benchmarks.resume",
                        run,
                        params=run_param,
                    )
                )
            },
        }
    )
    doc["components"]["parameters"]["run_id"] = {
        "name": "run_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    count = {"type": "integer", "minimum": 0}
    doc["components"]["schemas"].update(
        {
            "PromptSet": {
                "type": "object",
                "required": ["id", "slug", "name", "prompt_count", "categories"],
                "properties": {
                    "id": {"type": "integer"},
                    "slug": {"type": "string"},
                    "name": {"type": "string"},
                    "shipped": {"type": "boolean"},
                    "description": {"type": "string"},
                    "license": {"type": "string"},
                    "attribution": {"type": "string"},
                    "source_url": {"type": "string"},
                    "prompt_count": count,
                    "categories": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"name": {"type": "string"}, "prompt_count": count}},
                    },
                },
            },
            "PromptSetList": {
                "type": "object",
                "required": ["results"],
                "properties": {"results": {"type": "array", "items": _ref("PromptSet")}},
            },
            "PromptSetRequest": {
                "type": "object",
                "required": ["name", "prompts"],
                "properties": {
                    "name": {"type": "string", "maxLength": 200},
                    "prompts": {
                        "type": "array",
                        "maxItems": 2000,
                        "items": {
                            "oneOf": [
                                {"type": "string", "maxLength": 1000},
                                {
                                    "type": "object",
                                    "required": ["prompt"],
                                    "properties": {"prompt": {"type": "string"}, "category": {"type": "string"}},
                                },
                            ]
                        },
                    },
                },
            },
            "BenchmarkRunRequest": {
                "type": "object",
                "required": ["prompt_set", "versions"],
                "properties": {
                    "prompt_set": {"type": ["integer", "string"], "description": "The set's id or slug."},
                    "versions": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 8},
                    "category": {"type": "string"},
                    "sample_size": {"type": "integer", "minimum": 1},
                    "sample_seed": {"type": "integer", "minimum": 0},
                    "seeds": {"type": "array", "items": {"type": "integer", "minimum": 0}, "maxItems": 16},
                    "seed_count": {"type": "integer", "minimum": 1, "maximum": 16},
                    "input": {
                        "type": "object",
                        "description": "negative_prompt, width, height, num_inference_steps, guidance_scale, scheduler",
                    },
                    "visibility": {"type": "string", "enum": ["public", "unlisted", "private"]},
                    "title": {"type": "string", "maxLength": 200},
                },
            },
            "BenchmarkRun": {
                "type": "object",
                "required": ["id", "prompt_set", "seeds", "urls"],
                "properties": {
                    "id": {"type": "string"},
                    "title": {"type": "string"},
                    "prompt_set": {"type": "integer"},
                    "category": {"type": ["string", "null"]},
                    "sample_size": {"type": ["integer", "null"]},
                    "sample_seed": {"type": "integer"},
                    "seeds": {"type": "array", "items": {"type": "integer"}},
                    "versions": {"type": "array", "items": {"type": "string"}},
                    "status": {"type": "string", "enum": ["running", "waiting", "stopped", "finished"]},
                    "note": {"type": ["string", "null"]},
                    "progress": {"type": "object"},
                    "summary": {"type": "array", "items": {"type": "object"}},
                    "categories": {"type": "array", "items": {"type": "object"}},
                    "cost": {"type": "string"},
                    "urls": {"type": "object"},
                },
            },
            "BenchmarkRunPage": _page("BenchmarkRun"),
        }
    )


# --- grids (issue 14): Lightbox's own endpoints, marked so (Replicate's clients ignore them) ---


def grid_paths():
    grid, params = _ref("Grid"), ["grid_id"]
    return {
        "/v1/grids": {
            "get": _lightbox(_op("List your grids, newest first", "grids.list", _ref("GridPage"), params=["cursor"])),
            "post": _lightbox(
                _op(
                    "Create an X/Y/Z grid: one input, up to three axes; its cells start in the background",
                    "grids.create",
                    grid,
                    body=_ref("GridRequest"),
                    ok_status="201",
                )
            ),
        },
        "/v1/grids/{grid_id}": {"get": _lightbox(_gone(_op("Get a grid", "grids.get", grid, params=params)))},
        "/v1/grids/{grid_id}/predictions": {
            "get": _lightbox(
                _gone(
                    _op(
                        "List a grid's predictions, each with its cell",
                        "grids.predictions.list",
                        _ref("GridPredictionPage"),
                        params=[*params, "cursor"],
                    )
                )
            )
        },
        "/v1/grids/{grid_id}/cancel": {
            "post": _lightbox(_op("Stop a grid: cancel what has not ended", "grids.cancel", grid, params=params))
        },
    }


def grid_schemas():
    axis = {
        "type": "object",
        "required": ["kind"],
        "properties": {
            "kind": {"type": "string", "enum": ["version", "field", "prompt", "seed"]},
            "field": {"type": "string", "description": "The schema field of a 'field' axis."},
            "values": {
                "description": "As typed in the playground: '7, 7.5, 8', '20-40 (+5)', '1-10 [4]', 'all', "
                "'fox|cat|owl', '8 random'; or a list of values. None for a 'version' axis.",
                "oneOf": [{"type": "string"}, {"type": "array", "items": {}}],
            },
        },
    }
    return {
        "GridRequest": {
            "type": "object",
            "required": ["versions", "input", "axes"],
            "properties": {
                "versions": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Version ids or owner/name:id.",
                },
                "input": {"type": "object"},
                "axes": {"type": "array", "items": axis, "maxItems": 3, "description": "X, Y, Z (Z: pages)."},
                "seed": {"type": "integer"},
                "visibility": {"type": "string", "enum": ["public", "unlisted", "private"]},
                "title": {"type": "string"},
            },
        },
        "Grid": {
            "type": "object",
            "required": ["id", "status", "axes", "cells", "urls"],
            "properties": {
                "id": {"type": "string"},
                "status": {"type": "string", "enum": ["running", "finished", "canceled"]},
                "input": {"type": "object"},
                "seed": {"type": ["integer", "null"]},
                "versions": {"type": "array", "items": {"type": "string"}},
                "axes": {"type": "array", "items": {"type": "object"}},
                "cells": {"type": "integer"},
                "counts": {"type": "object"},
                "not_run": {"type": "object"},
                "visibility": {"type": "string"},
                "created_at": {"type": "string", "format": "date-time"},
                "canceled_at": {"type": ["string", "null"], "format": "date-time"},
                "urls": {"type": "object"},
            },
        },
        "GridPage": _page("Grid"),
        "GridPredictionPage": _page("Prediction"),
    }


# --- end grids ---


# --- Arena and leaderboard (issue 15): Lightbox's own endpoints, not Replicate's -------

ARENA_PARAMS = [
    {
        "name": "run",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "A benchmark run's id: its arena only.",
    },
    {
        "name": "category",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "One prompt category.",
    },
    {
        "name": "mine",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["1", "true"]},
        "description": "From your own votes only.",
    },
]
RATED = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "rating": {"type": "number"},
        "lower": {"type": "number"},
        "upper": {"type": "number"},
        "rank": {"type": "integer"},
    },
}


def _arena_paths():
    def lightbox(operation):
        operation["tags"] = ["lightbox"]
        operation["x-lightbox"] = True
        operation["parameters"] = ARENA_PARAMS
        operation["responses"]["400"] = PROBLEM
        return operation

    version = {
        "type": "object",
        "properties": {
            **RATED["properties"],
            "model": {"type": "string"},
            "votes": {"type": "integer"},
            "wins": {"type": "integer"},
            "losses": {"type": "integer"},
            "ties": {"type": "integer"},
            "both_bad": {"type": "integer"},
            "win_rate": {"type": ["number", "null"]},
            "both_bad_rate": {"type": ["number", "null"]},
            "median_predict_time": {"type": ["number", "null"]},
            "cost_per_image": {"type": ["number", "null"]},
        },
    }
    leaderboard = {
        "type": "object",
        "required": ["computed_at", "versions"],
        "properties": {
            "arena": {"type": ["string", "null"]},
            "category": {"type": ["string", "null"]},
            "personal": {"type": "boolean"},
            "computed_at": {"type": ["string", "null"], "format": "date-time"},
            "stale": {"type": "boolean"},
            "scale": {"type": "number"},
            "anchor": {"type": "number"},
            "reference": {"type": ["string", "null"]},
            "votes": {"type": "integer"},
            "both_bad": {"type": "integer"},
            "bootstrap_rounds": {"type": "integer"},
            "categories": {"type": "array", "items": {"type": "string"}},
            "versions": {"type": "array", "items": version},
            "style": {"type": ["object", "null"]},
            "pairs": {"type": "object"},
        },
    }
    return {
        "/v1/leaderboard": {
            "get": lightbox(
                _op(
                    "Get a leaderboard: Bradley-Terry ratings with 95% bootstrap intervals (Lightbox extension)",
                    "leaderboard.get",
                    leaderboard,
                )
            )
        },
        "/v1/arena/votes": {
            "get": lightbox(
                _op(
                    "Download the arena's votes as CSV, voters as pseudonyms (Lightbox extension)",
                    "arena.votes.list",
                    {"type": "string"},
                    ok_type="text/csv",
                )
            )
        },
    }
