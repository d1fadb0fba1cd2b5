"""The /v1 HTTP API: Replicate's, so Replicate's clients work against Lightbox."""

import json
import logging
import re
from functools import wraps

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import URLValidator
from django.db import IntegrityError, connection, transaction
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.multipartparser import MultiPartParserError
from django.views.decorators.csrf import csrf_exempt

from app.core import hardware, idempotency, netguard, pagination, payloads, schema, waits
from app.core.openapi import document
from app.core.prepared import Prepared
from app.models import (
    Access,
    ApiToken,
    BenchmarkRun,
    Comparison,
    Deployment,
    Grid,
    IdempotencyKey,
    Model,
    Prediction,
    PromptSet,
    Reproduction,
    Training,
    Version,
    Visibility,
)
from app.services import api_json as api
from app.services import arena as arena_service
from app.services import benchmarks as benchmark_service
from app.services import bundles as bundle_service
from app.services import collections as model_collections
from app.services import comparisons as comparison_service
from app.services import deployments as deployment_service
from app.services import files as user_files
from app.services import grids as grid_service
from app.services import limits, reproductions
from app.services import predictions as lifecycle
from app.services import prompt_sets as prompt_set_service
from app.services import trainings as training_service
from app.views import problems
from app.views.access import access_of, owns
from app.views.files import file_response

PAGE_SIZE = 100
EVENTS = {"start", "output", "logs", "completed"}
PREFER_WAIT_RE = re.compile(r"(?:^|[,;\s])wait(?:=(\d+))?", re.I)

log = logging.getLogger(__name__)


def api_view(*methods):
    """Bearer-token auth, allowed methods, and RFC 7807 errors for one endpoint."""

    def decorator(view):
        @csrf_exempt
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.method not in methods:
                response = problems.problem(405, "Method not allowed", f"Use {' or '.join(methods)}.")
                response["Allow"] = ", ".join(methods)
                return response
            scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
            user = ApiToken.objects.authenticate(raw.strip()) if scheme.lower() in ("bearer", "token") else None
            if user is None:
                response = problems.problem(
                    401, "Unauthenticated", "Send an API token as 'Authorization: Bearer <token>'."
                )
                response["WWW-Authenticate"] = "Bearer"
                return response
            request.user = user
            if any("\x00" in value for value in kwargs.values()):
                # Names nothing, and PostgreSQL refuses a NUL in a query (a 500).
                return problems.problem(404, "Not found", f"No endpoint at {request.path}.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def _base(request):
    return request.build_absolute_uri("/").rstrip("/")


def _not_found(what):
    return problems.problem(404, "Not found", f"{what} does not exist or is not yours.")


def _get_for_user(request, rows, pk, what, owner_only=False):
    """(item `pk` of `rows`, None), or (None, the problem to answer): 404 for
    what the user may not see (or, `owner_only`, act on), 410 for a shared item
    moderators hid; the rule is app.views.access.access_of, the pages' too.
    `rows`: a queryset, or a Prepared one."""
    item = rows.first(pk) if isinstance(rows, Prepared) else rows.filter(pk=pk).first()
    access = access_of(item, request.user, owner_only)
    if access == Access.HIDDEN:
        return None, problems.problem(410, "Gone", f"This {what.lower()} was hidden by moderators.")
    if access == Access.PRIVATE:
        return None, _not_found(f"{what} {pk}")
    return item, None


# The hottest query of the API (app.core.prepared says why compiled once).
PREDICTION = Prepared(lambda pk: Prediction.objects.select_related("version__model").filter(pk=pk))


def _get_model(request, owner, name):
    """The model, if `request.user` may see it (others' private models are not there)."""
    return Model.objects.visible_to(request.user).filter(owner=owner, name=name).first()


# --- Predictions ---------------------------------------------------------------


@api_view("GET", "POST")
def predictions(request):
    if request.method == "POST":
        return _create(request, version_ref=None)
    return _list(request)


@api_view("POST")
def model_predictions(request, owner, name):
    model = _get_model(request, owner, name)
    version = model.latest_version if model is not None else None
    if version is None:
        return _not_found(f"Model {owner}/{name}")
    version.model = model  # so that answering once the row is saved needs no query
    return _create(request, version_ref=version)


def _resolve_version(request, ref):
    """A version from "id" or "owner/name:id", of a model the user may see."""
    if not isinstance(ref, str) or not ref or "\x00" in ref:
        return None
    model_ref, _, version_id = ref.rpartition(":")
    visible = Model.objects.visible_to(request.user)
    version = Version.objects.select_related("model").filter(pk=version_id, model__in=visible).first()
    if version is None or (model_ref and model_ref != str(version.model)):
        return None
    return version


def _json_body(request):
    """(the request's JSON object, None), or (None, the problem to answer):
    413, 400, or 422 naming where it holds text nothing downstream can
    encode (a lone surrogate, in a value or a key)."""
    try:
        body = problems.parse_json_body(request)
    except problems.BodyTooLarge as exc:
        return None, problems.problem(413, "Request body too large", str(exc))
    except ValueError as exc:
        return None, problems.problem(400, "Bad request", str(exc))
    path = payloads.find_invalid_unicode(body)
    if path is not None:
        return None, problems.invalid_input({".".join(map(str, path)) or "body": [payloads.INVALID_UNICODE]})
    return body, None


def _create(request, version_ref, deployment=None):
    try:
        key = _idempotency_key(request)
    except ValueError as exc:
        return problems.problem(400, "Bad Idempotency-Key", str(exc))
    body, refusal = _json_body(request)
    if refusal:
        return refusal
    keyed = (key, idempotency.fingerprint(request.path, body)) if key else None
    if keyed:
        # Before any check: a retry gets its prediction even if, say, the
        # version has become unavailable since.
        try:
            started = lifecycle.keyed(request.user, *keyed)
        except lifecycle.KeyReused:
            return _key_reused(key)
        if started is not None:
            return _created(request, started, replayed=True)
    version = version_ref or _resolve_version(request, body.get("version"))
    if version is None:
        if "version" not in body:
            return problems.invalid_input({"version": ["This field is required."]})
        return problems.problem(404, "Version not found", f"No version {body.get('version')!r} in this catalog.")
    webhook, events, errors = _webhook_fields(body)
    visibility = body.get("visibility")
    if visibility is not None and visibility not in Visibility.values:
        errors["visibility"] = [f"One of: {', '.join(Visibility.values)}."]
    if errors:
        return problems.invalid_input(errors)
    try:
        prediction = lifecycle.start(
            version,
            body.get("input", {}),
            owner=request.user,
            source=Prediction.Source.API,
            visibility=visibility,
            webhook=webhook,
            webhook_events_filter=events,
            deployment=deployment,
            idempotency=keyed,
        )
    except schema.InputError as exc:
        return problems.invalid_input(
            {f"input.{k}" if k not in ("input", "version") else k: v for k, v in exc.errors.items()}
        )
    except limits.RunRefused as exc:
        return problems.refused(exc)
    except lifecycle.AlreadyStarted as exc:
        return _created(request, exc.prediction, replayed=True)
    except lifecycle.KeyReused:
        return _key_reused(key)
    return _created(request, prediction)


def _webhook_fields(body):
    """(webhook, events filter, {field: [reason]}) of a create's body."""
    errors = {}
    webhook = body.get("webhook") or ""
    if webhook and not (isinstance(webhook, str) and re.match(r"^https?://[^\s/]+", webhook)):
        errors["webhook"] = ["Give an http(s) URL."]
    elif webhook and len(webhook) > Prediction._meta.get_field("webhook").max_length:
        errors["webhook"] = ["The URL is too long (at most 1000 characters)."]
    elif webhook:
        try:
            netguard.check_url(webhook)
        except netguard.UnsafeURL as exc:
            errors["webhook"] = [netguard.refusal("webhook", exc)]
    events = body.get("webhook_events_filter") or []
    if not isinstance(events, list) or not all(isinstance(event, str) and event in EVENTS for event in events):
        errors["webhook_events_filter"] = [f"A list of: {', '.join(sorted(EVENTS))}."]
    return webhook, events, errors


def _created(request, prediction, replayed=False):
    """201 with the prediction. Once its row is saved nothing here may fail:
    what it answers is built from the row in memory (no outputs yet), and a
    `Prefer: wait` body falls back to that whatever happens to the wait.
    A prediction an Idempotency-Key started before is answered as it is now."""
    wait = _prefer_wait(request)
    if wait and not prediction.is_terminal:
        response = _waiting_response(prediction, wait, _base(request))
    else:
        payload = api.prediction_json(
            prediction, _base(request), outputs=api.outputs_of(prediction) if replayed else []
        )
        response = JsonResponse(payload, status=201)
        response["Location"] = payload["urls"]["get"]
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return response


def _idempotency_key(request):
    """The request's Idempotency-Key, or "" without one; ValueError for a bad one."""
    raw = request.headers.get("Idempotency-Key")
    return "" if raw is None else idempotency.parse(raw)


def _key_reused(key):
    return problems.problem(
        409,
        "Idempotency-Key reused",
        f"The Idempotency-Key {key!r} already started a prediction from a different request (another body or "
        f"endpoint) in the last {IdempotencyKey.TTL.total_seconds() / 3600:.0f} hours. Use a new key for a new "
        "request.",
    )


def _prefer_wait(request):
    match = PREFER_WAIT_RE.search(request.headers.get("Prefer", ""))
    if not match:
        return 0
    return min(int(match.group(1) or settings.PREFER_WAIT_MAX), settings.PREFER_WAIT_MAX)


def _waiting_response(prediction, seconds, base):
    """201 now, and the body once the prediction ends (its result arrives on
    another thread or process, by webhook) or `seconds` pass. The body is an
    async iterator: the web server (lightbox.webserver) awaits it on its event loop,
    so the wait holds no thread (app.core.waits)."""

    # Its state now, the answer should the wait or the look at the row fail
    # (the database restarting, say): the 201 has gone out, and the client
    # must learn the id of the prediction that runs anyway.
    known = api.prediction_json(prediction, base, outputs=[])
    known["status"] = Prediction.Status.STARTING  # not terminal: Replicate's clients poll it

    async def body():
        try:
            await waits.wait(prediction.pk, seconds, _ended)
        except Exception:
            log.warning("Waiting for prediction %s failed; answering its state", prediction.pk, exc_info=True)
        try:
            answer = await sync_to_async(_waited_json, thread_sensitive=False)(prediction, base)
        except Exception:
            log.warning("Reading prediction %s failed; answering what is known", prediction.pk, exc_info=True)
            answer = json.dumps(known, cls=DjangoJSONEncoder)
        yield answer

    response = StreamingHttpResponse(body(), status=201, content_type="application/json")
    response["Location"] = known["urls"]["get"]
    return response


def _waited_json(prediction, base):
    prediction.refresh_from_db()
    payload = api.prediction_json(prediction, base)
    if not prediction.is_terminal:
        # Replicate's clients keep polling only a "starting" prediction.
        payload["status"] = Prediction.Status.STARTING
    return json.dumps(payload, cls=DjangoJSONEncoder)


def _ended(prediction_ids):
    """Which of these predictions have ended, in plain SQL: waiting requests ask
    it every few ms, and building the ORM query cost ~0.5 ms of CPU each time."""
    if not prediction_ids:  # a sweep whose waiters all left: `IN ()` is not SQL
        return set()
    terminal = [status.value for status in Prediction.TERMINAL]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {Prediction._meta.db_table} WHERE id IN ({', '.join(['%s'] * len(prediction_ids))}) "
            f"AND status IN ({', '.join(['%s'] * len(terminal))})",
            [*prediction_ids, *terminal],
        )
        return {row[0] for row in cursor.fetchall()}


def _list(request):
    # prefetch, not select_related: a page shares a few versions, and select_related
    # built (and parsed the schema of) a Version and a Model for each of its 100 rows.
    queryset = Prediction.objects.filter(owner=request.user).prefetch_related("version__model")
    base = _base(request)

    def render(items):
        outputs = api.outputs_by_prediction(items)
        return [api.prediction_json(p, base, outputs[p.pk]) for p in items]

    return _page_response(request, queryset, render)


def _page_response(request, queryset, render):
    """One page of `queryset` (app.core.pagination), as Replicate's lists are:
    {"next", "previous", "results"}, absolute URLs; `render` turns the page's rows into results."""
    try:
        page = pagination.paginate(queryset, request.GET.get("cursor"), PAGE_SIZE, strict=True)
    except pagination.BadCursor:
        return problems.problem(400, "Bad request", "The cursor is not valid.")
    page_url = _base(request) + request.path + "?cursor="
    return JsonResponse(
        {
            "next": page_url + page.next_cursor if page.next_cursor else None,
            "previous": page_url + page.previous_cursor if page.previous_cursor else None,
            "results": render(page.items),
        }
    )


@api_view("GET")
def prediction(request, prediction_id):
    found, refusal = _get_for_user(request, PREDICTION, prediction_id, "Prediction")
    if refusal:
        return refusal
    payload = api.prediction_json(found, _base(request), outputs=api.outputs_of(found), viewer=request.user)
    return JsonResponse(payload)


@api_view("POST")
def prediction_cancel(request, prediction_id):
    found, refusal = _get_for_user(request, PREDICTION, prediction_id, "Prediction", owner_only=True)
    if refusal:
        return refusal
    lifecycle.cancel(found)
    return JsonResponse(api.prediction_json(found, _base(request)))


# --- Deployments -----------------------------------------------------------------


def _get_deployment_for_user(request, owner, name):
    """(deployment, None), or (None, a 404): only its owner sees a deployment."""
    found = (
        Deployment.objects.select_related("owner", "released_by", "version__model")
        .filter(owner=request.user, owner__username=owner, name=name)
        .first()
    )
    if found is None:
        return None, _not_found(f"Deployment {owner}/{name}")
    return found, None


@api_view("GET", "POST")
def deployments(request):
    if request.method == "POST":
        body, refusal = _json_body(request)
        if refusal:
            return refusal
        try:
            created = deployment_service.create(request.user, body)
        except deployment_service.Invalid as exc:
            return problems.invalid_input(exc.errors)
        return JsonResponse(api.deployment_json(created), status=201)
    queryset = Deployment.objects.filter(owner=request.user).select_related("owner", "released_by", "version__model")
    return _page_response(request, queryset, lambda items: [api.deployment_json(found) for found in items])


@api_view("GET", "PATCH", "DELETE")
def deployment(request, owner, name):
    found, refusal = _get_deployment_for_user(request, owner, name)
    if refusal:
        return refusal
    if request.method == "DELETE":
        try:
            deployment_service.delete(found)
        except deployment_service.Conflict as exc:
            return problems.problem(409, "Conflict", str(exc))
        return HttpResponse(status=204)
    if request.method == "PATCH":
        body, refusal = _json_body(request)
        if refusal:
            return refusal
        try:
            found = deployment_service.update(found, body, request.user)
        except deployment_service.Invalid as exc:
            return problems.invalid_input(exc.errors)
    return JsonResponse(api.deployment_json(found))


@api_view("POST")
def deployment_predictions(request, owner, name):
    found, refusal = _get_deployment_for_user(request, owner, name)
    if refusal:
        return refusal
    return _create(request, version_ref=found.version, deployment=found)


# --- Models and versions ---------------------------------------------------------

MODEL_TEXT_LIMITS = {"description": 10_000, "readme": 100_000}
MODEL_URL_FIELDS = ("cover_image_url", "github_url", "paper_url", "license_url", "weights_url")
# What POST /v1/models and PATCH take, as Replicate's (PATCH: its documented six).
MODEL_CREATE_FIELDS = {"owner", "name", "visibility", "hardware", "description", *MODEL_URL_FIELDS[:4]}
MODEL_UPDATE_FIELDS = {"description", "readme", "github_url", "paper_url", "license_url", "weights_url"}
MODEL_NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9_.-]{0,98}[a-z0-9])?")
_http_url = URLValidator(schemes=["http", "https"])


def _forbidden(detail):
    return problems.problem(403, "Forbidden", detail)


def _get_own_model(request, owner, name, doing):
    """(model, None) if it is the user's, else (None, the problem): 404 for a
    model they may not see, 403 for one they may see but do not own."""
    found = _get_model(request, owner, name)
    if found is None:
        return None, _not_found(f"Model {owner}/{name}")
    if found.user_id != request.user.pk:
        return None, _forbidden(f"You can only {doing} models you own; {owner}/{name} is not yours.")
    return found, None


def _model_field_errors(body, allowed):
    """{field: [reason]} for the model fields of `body` Lightbox cannot take."""
    errors = {key: ["Unknown field."] for key in body if key not in allowed}
    for key, limit in MODEL_TEXT_LIMITS.items():
        if key in body and body[key] is not None:
            value = body[key]
            reason = payloads.text_error(value, limit) if isinstance(value, str) else "Give a string."
            if reason:
                errors[key] = [reason]
    for key in MODEL_URL_FIELDS:
        value = body.get(key)
        if key not in body or value in ("", None):
            continue
        try:
            if not isinstance(value, str) or len(value) > 200:
                raise ValidationError("")
            _http_url(value)
        except ValidationError:
            errors[key] = ["Give an http(s) URL of at most 200 characters."]
    return errors


@api_view("GET", "POST")
def models(request):
    if request.method == "POST":
        return _create_model(request)
    queryset = Model.objects.visible_to(request.user).with_run_count().prefetch_related("versions")
    base = _base(request)
    return _page_response(
        request, queryset, lambda items: [api.model_json(m, base, run_count=m.run_count) for m in items]
    )


def _create_model(request):
    body, refusal = _json_body(request)
    if refusal:
        return refusal
    errors = _model_field_errors(body, MODEL_CREATE_FIELDS)
    for key in ("owner", "name", "visibility", "hardware"):
        if not body.get(key):
            errors[key] = ["This field is required."]
    owner, name = body.get("owner"), body.get("name")
    if name and not (isinstance(name, str) and MODEL_NAME_RE.fullmatch(name)):
        errors["name"] = ["Lowercase letters, digits, '-', '_' and '.', at most 100, starting and ending alphanumeric."]
    if body.get("visibility") and not _one_of(body["visibility"], Model.Visibility.values):
        errors["visibility"] = [f"One of: {', '.join(Model.Visibility.values)}."]
    if body.get("hardware") and not _one_of(body["hardware"], hardware.SKUS):
        errors["hardware"] = [f"One of: {', '.join(sku for sku, _ in hardware.HARDWARE)} (GET /v1/hardware)."]
    if errors:
        return problems.invalid_input(errors)
    # Lightbox has no organisations: a model's owner is its creator's username.
    if owner != request.user.username:
        return _forbidden(f"You can only create models under your own username, {request.user.username}.")
    if Model.objects.filter(owner=owner).exclude(user=request.user).exists():
        return _forbidden(f"The owner name {owner} belongs to the catalog's models.")
    fields = {key: body[key] for key in MODEL_CREATE_FIELDS - {"owner", "name"} if body.get(key) is not None}
    try:
        with transaction.atomic():
            created = Model.objects.create(owner=owner, name=name, user=request.user, **fields)
    except IntegrityError:
        return problems.problem(409, "Conflict", f"A model {owner}/{name} already exists.")
    response = JsonResponse(api.model_json(created, _base(request)), status=201)
    response["Location"] = _base(request) + f"/v1/models/{owner}/{name}"
    return response


def _one_of(value, choices):
    return isinstance(value, str) and value in choices


@api_view("GET", "PATCH", "DELETE")
def model(request, owner, name):
    if request.method == "PATCH":
        return _update_model(request, owner, name)
    if request.method == "DELETE":
        return _delete_model(request, owner, name)
    found = _get_model(request, owner, name)
    if found is None:
        return _not_found(f"Model {owner}/{name}")
    run_count = Prediction.objects.filter(version__model=found).count()
    example = _examples(found).first()
    default_example = api.prediction_json(example, _base(request), viewer=request.user) if example else None
    return JsonResponse(api.model_json(found, _base(request), run_count=run_count, default_example=default_example))


def _update_model(request, owner, name):
    found, refusal = _get_own_model(request, owner, name, "change")
    if refusal:
        return refusal
    body, refusal = _json_body(request)
    if refusal:
        return refusal
    errors = _model_field_errors(body, MODEL_UPDATE_FIELDS)
    if errors:
        return problems.invalid_input(errors)
    for key, value in body.items():
        setattr(found, key, value or "")
    found.save(update_fields=list(body))
    run_count = Prediction.objects.filter(version__model=found).count()
    return JsonResponse(api.model_json(found, _base(request), run_count=run_count))


def _delete_model(request, owner, name):
    found, refusal = _get_own_model(request, owner, name, "delete")
    if refusal:
        return refusal
    if found.versions.exists():
        return problems.problem(
            409, "Conflict", f"{owner}/{name} has versions: delete them first (DELETE its versions/{{id}})."
        )
    found.delete()
    return HttpResponse(status=204)


def _examples(found):
    """A model's examples: its owner's public predictions of it that succeeded
    (none for the catalog's models, which no account owns)."""
    if found.user_id is None:
        return Prediction.objects.none()
    return (
        Prediction.objects.public()
        .for_model(found)
        .filter(owner_id=found.user_id, status=Prediction.Status.SUCCEEDED)
        .select_related("version__model")
        .order_by("-created_at", "-pk")
    )


@api_view("GET")
def model_examples(request, owner, name):
    found = _get_model(request, owner, name)
    if found is None:
        return _not_found(f"Model {owner}/{name}")
    base = _base(request)

    def render(items):
        outputs = api.outputs_by_prediction(items)
        return [api.prediction_json(p, base, outputs[p.pk], viewer=request.user) for p in items]

    return _page_response(request, _examples(found), render)


@api_view("GET")
def model_readme(request, owner, name):
    found = _get_model(request, owner, name)
    if found is None:
        return _not_found(f"Model {owner}/{name}")
    if not found.readme:
        return problems.problem(404, "Not found", f"{owner}/{name} has no README.")
    return HttpResponse(found.readme, content_type="text/markdown; charset=utf-8")


@api_view("GET")
def versions(request, owner, name):
    found = _get_model(request, owner, name)
    if found is None:
        return _not_found(f"Model {owner}/{name}")
    return JsonResponse(
        {"next": None, "previous": None, "results": [api.version_json(v) for v in found.versions.all()]}
    )


@api_view("GET", "DELETE")
def version(request, owner, name, version_id):
    if request.method == "DELETE":
        return _delete_version(request, owner, name, version_id)
    model_found = _get_model(request, owner, name)
    found = model_found and model_found.versions.filter(pk=version_id).first()
    if not found:
        return _not_found(f"Version {version_id} of {owner}/{name}")
    return JsonResponse(api.version_json(found))


def _delete_version(request, owner, name, version_id):
    """Delete a version with its owner's predictions of it (and their
    images), as Replicate does; refused while others' predictions use it or
    any of it still runs. 204 (Replicate documents 202, but its Python
    client counts only 204 as deleted, and this is done at once)."""
    model_found, refusal = _get_own_model(request, owner, name, "delete versions of")
    if refusal:
        return refusal
    found = model_found.versions.filter(pk=version_id).first()
    if found is None:
        return _not_found(f"Version {version_id} of {owner}/{name}")
    predictions_of = Prediction.objects.filter(version=found)
    if predictions_of.exclude(owner=request.user).exists():
        return problems.problem(409, "Conflict", "Others have run predictions with this version; it stays.")
    if predictions_of.active().exists():
        return problems.problem(409, "Conflict", "Predictions of this version are still running: cancel them first.")
    with transaction.atomic():
        predictions_of.delete()
        found.delete()
    return HttpResponse(status=204)


# --- Files ---------------------------------------------------------------------


METADATA_MAX_BYTES = 64 * 1024


@api_view("GET", "POST")
def files(request):
    if request.method == "POST":
        return _create_file(request)
    base = _base(request)
    queryset = request.user.files.live()
    return _page_response(request, queryset, lambda items: [api.file_json(f, base) for f in items])


def _create_file(request):
    """Multipart as both official clients send it: the file in `content`
    (its part's filename and type), `metadata` JSON as a field (Python) or a
    part (Node), and optionally `filename` and `type` fields (curl, per the docs)."""
    try:
        content, fields = request.FILES.get("content"), request.POST
    except RequestDataTooBig:
        return problems.problem(413, "Content Too Large", "The form's fields are too large.")
    except (MultiPartParserError, TooManyFieldsSent) as exc:
        return problems.problem(400, "Bad request", f"The multipart/form-data body could not be read: {exc}")
    errors = {}
    if content is None:
        errors["content"] = ["This field is required: send the file as the multipart/form-data part `content`."]
    filename = fields.get("filename") or (content.name if content else "")
    if len(filename.encode("utf-8", "surrogatepass")) > 255 or payloads.text_error(filename):
        errors["filename"] = [payloads.text_error(filename) or "At most 255 bytes of UTF-8."]
    metadata, reason = _file_metadata(request)
    if reason:
        errors["metadata"] = [reason]
    if errors:
        return problems.invalid_input(errors)
    try:
        created = user_files.create(request.user, content, filename=filename, metadata=metadata)
    except user_files.FileRefused as exc:
        if exc.status == 413:
            return problems.problem(413, "Content Too Large", str(exc))
        if exc.status == 403:
            return _forbidden(str(exc))
        return problems.invalid_input({"content": [str(exc)]})
    payload = api.file_json(created, _base(request))
    response = JsonResponse(payload, status=201)
    response["Location"] = payload["urls"]["get"]
    return response


def _file_metadata(request):
    """(metadata, None) or (None, why it cannot be taken)."""
    raw = request.POST.get("metadata")
    if raw is None and "metadata" in request.FILES:
        raw = request.FILES["metadata"].read(METADATA_MAX_BYTES + 1)
    if raw in (None, "", b""):
        return {}, None
    if len(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw) > METADATA_MAX_BYTES:
        return None, f"At most {METADATA_MAX_BYTES // 1024} KB of JSON."
    try:
        metadata = payloads.loads(raw)
    except ValueError as exc:
        return None, str(exc)
    if not isinstance(metadata, dict):
        return None, "Give a JSON object."
    bad = payloads.find_bad_text(metadata)
    return (None, bad[1]) if bad else (metadata, None)


@api_view("GET", "DELETE")
def file(request, file_id):
    found = user_files.get_for_owner(request.user, file_id)
    if found is None:
        return _not_found(f"File {file_id}")
    if request.method == "DELETE":
        found.delete()
        return HttpResponse(status=204)
    return JsonResponse(api.file_json(found, _base(request)))


@api_view("GET")
def file_download(request, file_id):
    found = user_files.get_for_owner(request.user, file_id)
    if found is None:
        return _not_found(f"File {file_id}")
    try:
        handle = found.file.open("rb")
    except OSError:
        return _not_found(f"File {file_id}")
    return file_response(handle, found.content_type, download_as=found.name)


# --- Account, hardware, collections ----------------------------------------------


# --- Trainings (fine-tuning: trainapi) ---------------------------------------------


@api_view("POST")
def version_trainings(request, owner, name, version_id):
    model = _get_model(request, owner, name)
    version = model.versions.filter(pk=version_id).first() if model is not None else None
    if version is None:
        return _not_found(f"Version {owner}/{name}:{version_id}")
    version.model = model
    body, refusal = _json_body(request)
    if refusal:
        return refusal
    webhook, events, errors = _webhook_fields(body)
    if not body.get("destination"):
        errors["destination"] = ['This field is required: "owner/name", a model of yours.']
    if not isinstance(body.get("input"), dict):
        errors["input"] = ["Give the training's input as a JSON object (input_images, token_string, ...)."]
    if not webhook and body.get("webhook_completed") and "webhook" not in errors:
        # The Python client's older name for a webhook of the end only.
        webhook, events, more = _webhook_fields({"webhook": body["webhook_completed"], "webhook_events_filter": []})
        events = ["completed"]
        errors.update({"webhook_completed": value for value in more.values()})
    unknown = set(body) - {"destination", "input", "webhook", "webhook_events_filter", "webhook_completed"}
    for key in sorted(unknown):
        errors[key] = ["Unknown field."]
    if errors:
        return problems.invalid_input(errors)
    try:
        training = training_service.start(
            version,
            body["destination"],
            body["input"],
            owner=request.user,
            webhook=webhook,
            webhook_events_filter=events,
        )
    except training_service.Refused as exc:
        if exc.status == 422:
            return problems.invalid_input({exc.field: [exc.detail]})
        return problems.problem(exc.status, exc.title, exc.detail)
    except schema.InputError as exc:
        return problems.invalid_input({f"input.{k}" if k != "input" else k: v for k, v in exc.errors.items()})
    except limits.RunRefused as exc:
        return problems.refused(exc)
    payload = api.training_json(training, _base(request))
    response = JsonResponse(payload, status=201)
    response["Location"] = payload["urls"]["get"]
    return response


def _get_training_for_user(request, training_id):
    """Only its owner sees a training."""
    rows = Training.objects.select_related("version__model", "destination")
    return _get_for_user(request, rows, training_id, "Training", owner_only=True)


@api_view("GET")
def trainings(request):
    queryset = Training.objects.for_user(request.user).select_related("version__model", "destination")
    base = _base(request)
    return _page_response(request, queryset, lambda items: [api.training_json(t, base) for t in items])


@api_view("GET")
def training(request, training_id):
    found, refusal = _get_training_for_user(request, training_id)
    if refusal:
        return refusal
    return JsonResponse(api.training_json(found, _base(request)))


@api_view("POST")
def training_cancel(request, training_id):
    found, refusal = _get_training_for_user(request, training_id)
    if refusal:
        return refusal
    training_service.cancel(found)
    return JsonResponse(api.training_json(found, _base(request)))


@api_view("GET")
def account(request):
    return JsonResponse(api.account_json(request.user))


@api_view("GET")
def hardware_list(request):
    # A bare list, as Replicate's (its clients read it so).
    return JsonResponse(hardware.as_json(), safe=False)


@api_view("GET")
def collections(request):
    return JsonResponse(
        {"next": None, "previous": None, "results": [api.collection_json(c) for c in model_collections.listed()]}
    )


@api_view("GET")
def collection(request, slug):
    found = model_collections.get(slug)
    if found is None:
        return _not_found(f"Collection {slug}")
    members = model_collections.models_of(found, request.user)
    return JsonResponse(api.collection_json(found, members, _base(request)))


@api_view("GET")
def webhook_secret(request):
    return JsonResponse({"key": api.webhook_secret(request.user)})


# --- Comparisons: Lightbox's own operations (tagged "lightbox" in /v1/openapi.json) ----

# Versions one comparison may fan out to.
COMPARISON_MAX_VERSIONS = 10


@api_view("GET", "POST")
def comparisons(request):
    if request.method == "POST":
        return _create_comparison(request)
    queryset = request.user.comparisons.all()
    base = _base(request)

    def render(items):
        rows = {c.pk: [] for c in items}
        for prediction in Prediction.objects.filter(comparison_id__in=list(rows)).select_related("version__model"):
            rows[prediction.comparison_id].append(prediction)
        outputs = api.outputs_by_prediction([p for ps in rows.values() for p in ps])
        return [api.comparison_json(c, base, sorted(rows[c.pk], key=lambda p: p.created_at), outputs) for c in items]

    return _page_response(request, queryset, render)


def _comparison_fields(request, body):
    """(versions, input, seed, visibility, None) from a create's body, or the
    problem to answer last."""
    errors = {}
    refs = body.get("versions")
    versions = []
    if not isinstance(refs, list) or not refs:
        errors["versions"] = ["A list of one or more version ids (or owner/name:id)."]
    elif len(refs) > COMPARISON_MAX_VERSIONS:
        errors["versions"] = [f"At most {COMPARISON_MAX_VERSIONS} versions."]
    else:
        for index, ref in enumerate(refs):
            version = _resolve_version(request, ref)
            if version is None:
                errors[f"versions.{index}"] = [f"No version {ref!r} in this catalog."]
            versions.append(version)
    given = body.get("input", {})
    if not isinstance(given, dict):
        errors["input"] = ["A JSON object."]
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= schema.MAX_SEED):
        errors["seed"] = [f"A whole number from 0 to {schema.MAX_SEED}."]
    visibility = body.get("visibility")
    if visibility is not None and visibility not in Visibility.values:
        errors["visibility"] = [f"One of: {', '.join(Visibility.values)}."]
    if errors:
        return None, None, None, None, problems.invalid_input(errors)
    return versions, given, seed, visibility, None


def _create_comparison(request):
    body, refusal = _json_body(request)
    if refusal:
        return refusal
    versions, given, seed, visibility, refusal = _comparison_fields(request, body)
    if refusal:
        return refusal
    try:
        comparison = comparison_service.start(
            versions, given, owner=request.user, seed=seed, visibility=visibility or settings.DEFAULT_API_VISIBILITY
        )
    except schema.InputError as exc:
        return problems.invalid_input(exc.errors)
    except limits.RunRefused as exc:
        return problems.refused(exc)
    payload = api.comparison_json(comparison, _base(request))
    response = JsonResponse(payload, status=201)
    response["Location"] = payload["urls"]["get"]
    return response


@api_view("GET")
def comparison(request, comparison_id):
    found, refusal = _get_for_user(request, Comparison.objects.all(), comparison_id, "Comparison")
    if refusal:
        return refusal
    viewer = None if owns(request.user, found) else request.user
    rows = list(found.predictions.select_related("version__model").order_by("created_at"))
    return JsonResponse(api.comparison_json(found, _base(request), rows, viewer=viewer))


@api_view("GET")
def comparison_predictions(request, comparison_id):
    found, refusal = _get_for_user(request, Comparison.objects.all(), comparison_id, "Comparison")
    if refusal:
        return refusal
    viewer = None if owns(request.user, found) else request.user
    queryset = found.predictions.prefetch_related("version__model")
    base = _base(request)

    def render(items):
        outputs = api.outputs_by_prediction(items)
        return [api.prediction_json(p, base, outputs[p.pk], viewer) for p in items]

    return _page_response(request, queryset, render)


def openapi(request):
    return JsonResponse(document(_base(request)))


@csrf_exempt
def not_found(request, path=""):
    # csrf_exempt: a POST to an unknown path is a 404 too, not Django's CSRF page.
    return problems.problem(404, "Not found", f"No endpoint at {request.path}.")


# --- Reproducibility bundles (Lightbox extension: tagged "lightbox" in /v1/openapi.json; docs/bundles.md) ---


def _bundle_of(request, queryset, item_id, what):
    """A zip of the item, if the user may see it (404, or 410 once hidden)."""
    item, refusal = _get_for_user(request, queryset, item_id, what)
    if refusal:
        return refusal
    name, data = bundle_service.export(item, request.user)
    response = HttpResponse(data, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


# --- bench: prompt sets and benchmark runs (Lightbox's own endpoints) ----------


def _get_run_for_user(request, run_id, owner_only=False):
    runs = BenchmarkRun.objects.select_related("prompt_set")
    return _get_for_user(request, runs, run_id, "Benchmark run", owner_only)


def _run_json(request, run):
    versions = benchmark_service.versions_of(run)
    return api.benchmark_json(run, _base(request), benchmark_service.summary(run, versions), versions)


@api_view("GET", "POST")
def benchmarks(request):
    if request.method == "POST":
        return _create_benchmark(request)
    queryset = BenchmarkRun.objects.filter(owner=request.user).select_related("prompt_set")
    base = _base(request)
    return _page_response(request, queryset, lambda items: [api.benchmark_json(run, base) for run in items])


def _int_or_none(body, field, errors):
    value = body.get(field)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        errors[field] = ["A whole number."]
        return None
    return value


def _create_benchmark(request):
    body, refusal = _json_body(request)
    if refusal:
        return refusal
    errors = {}
    prompt_sets_usable = PromptSet.objects.usable_by(request.user)
    ref = body.get("prompt_set")
    prompt_set = None
    if isinstance(ref, int) and not isinstance(ref, bool) and 0 < ref < 2**63:
        prompt_set = prompt_sets_usable.filter(pk=ref).first()
    elif isinstance(ref, str) and ref and "\x00" not in ref:
        prompt_set = prompt_sets_usable.filter(slug=ref[:100]).order_by("owner_id").first()
    if prompt_set is None:
        errors["prompt_set"] = ["Give the id or slug of a prompt set (GET /v1/prompt-sets)."]
    refs = body.get("versions")
    versions = []
    if not isinstance(refs, list) or not refs or len(refs) > benchmark_service.MAX_VERSIONS:
        errors["versions"] = [f'A list of 1 to {benchmark_service.MAX_VERSIONS} versions ("owner/name:id" or an id).']
    else:
        for ref in refs:
            version = _resolve_version(request, ref)
            if version is None:
                errors["versions"] = [f"No version {str(ref)[:100]!r} in this catalog."]
                break
            versions.append(version)
    category = body.get("category") or ""
    if not isinstance(category, str) or len(category) > 100:
        errors["category"] = ["A category name of the set."]
    sample_size = _int_or_none(body, "sample_size", errors)
    sample_seed = _int_or_none(body, "sample_seed", errors)
    seed_count = _int_or_none(body, "seed_count", errors)
    visibility = body.get("visibility")
    if visibility is not None and visibility not in Visibility.values:
        errors["visibility"] = [f"One of: {', '.join(Visibility.values)}."]
    title = body.get("title") or ""
    if not isinstance(title, str) or len(title) > 200:
        errors["title"] = ["Text of at most 200 characters."]
    if errors:
        return problems.invalid_input(errors)
    try:
        run = benchmark_service.create(
            request.user,
            prompt_set,
            versions,
            category=category,
            sample_size=sample_size,
            sample_seed=sample_seed,
            seeds=body.get("seeds"),
            seed_count=1 if seed_count is None else seed_count,
            input=body.get("input"),
            visibility=visibility or Visibility.UNLISTED,
            title=title,
        )
    except benchmark_service.RunError as exc:
        return problems.invalid_input(exc.errors)
    response = JsonResponse(_run_json(request, run), status=201)
    response["Location"] = f"{_base(request)}/v1/benchmarks/{run.pk}"
    return response


@api_view("GET")
def prediction_bundle(request, prediction_id):
    return _bundle_of(request, Prediction.objects.select_related("version__model"), prediction_id, "Prediction")


@api_view("GET")
def comparison_bundle(request, comparison_id):
    return _bundle_of(request, Comparison.objects.all(), comparison_id, "Comparison")


@api_view("GET")
def grid_bundle(request, grid_id):
    return _bundle_of(request, Grid.objects.all(), grid_id, "Grid")


@api_view("GET")
def benchmark_bundle(request, benchmark_id):
    return _bundle_of(request, BenchmarkRun.objects.select_related("prompt_set"), benchmark_id, "Benchmark run")


@api_view("POST")
def bundles_import(request):
    """Import a bundle: multipart/form-data with the zip in the part `bundle`,
    or the zip itself as the body (Content-Type: application/zip)."""
    if request.content_type == "application/zip":
        try:
            data = request.body
        except RequestDataTooBig:
            return problems.problem(413, "Content Too Large", "The bundle is larger than this site takes.")
    else:
        try:
            uploaded = request.FILES.get("bundle")
        except RequestDataTooBig:
            return problems.problem(413, "Content Too Large", "The form's fields are too large.")
        except (MultiPartParserError, TooManyFieldsSent) as exc:
            return problems.problem(400, "Bad request", f"The multipart/form-data body could not be read: {exc}")
        if uploaded is None:
            return problems.invalid_input(
                {
                    "bundle": [
                        "Send the zip as the multipart part `bundle`, or as the body with Content-Type: application/zip."
                    ]
                }
            )
        data = uploaded.read(settings.BUNDLE_MAX_BYTES + 1)
    try:
        found = bundle_service.import_bundle(request.user, data)
    except bundle_service.BundleError as exc:
        return problems.invalid_input({"bundle": [str(exc)]})
    except limits.RunRefused as exc:
        return problems.refused(exc)
    payload = api.reproduction_json(found, list(found.items.all()), _base(request))
    response = JsonResponse(payload, status=201)
    response["Location"] = payload["urls"]["get"]
    return response


@api_view("GET")
def bundle_reproduction(request, reproduction_id):
    found, refusal = _get_for_user(
        request, Reproduction.objects.all(), reproduction_id, "Bundle import", owner_only=True
    )
    if refusal:
        return refusal
    return JsonResponse(api.reproduction_json(found, reproductions.settle(found), _base(request)))


@api_view("GET")
def benchmark(request, run_id):
    run, refusal = _get_run_for_user(request, run_id)
    return refusal or JsonResponse(_run_json(request, run))


@api_view("GET")
def benchmark_predictions(request, run_id):
    """Every prediction of the run, newest first, each with the prompt's
    position and category in its set."""
    run, refusal = _get_run_for_user(request, run_id)
    if refusal:
        return refusal
    queryset = (
        Prediction.objects.filter(comparison__benchmark=run)
        .select_related("comparison__benchmark_prompt")
        .prefetch_related("version__model")
    )
    base = _base(request)

    def render(items):
        outputs = api.outputs_by_prediction(items)
        results = []
        for prediction in items:
            payload = api.prediction_json(prediction, base, outputs[prediction.pk], viewer=request.user)
            prompt = prediction.comparison.benchmark_prompt
            payload["benchmark"] = {
                "id": run.pk,
                "comparison": prediction.comparison_id,
                "prompt_position": prompt.position if prompt else None,
                "category": prompt.category if prompt else None,
                "seed": prediction.comparison.seed,
            }
            results.append(payload)
        return results

    return _page_response(request, queryset, render)


@api_view("POST")
def benchmark_stop(request, run_id):
    run, refusal = _get_run_for_user(request, run_id, owner_only=True)
    if refusal:
        return refusal
    benchmark_service.stop(run)
    return JsonResponse(_run_json(request, run))


@api_view("POST")
def benchmark_resume(request, run_id):
    run, refusal = _get_run_for_user(request, run_id, owner_only=True)
    if refusal:
        return refusal
    benchmark_service.resume(run)
    return JsonResponse(_run_json(request, run))


@api_view("GET", "POST")
def prompt_set_list(request):
    if request.method == "POST":
        return _create_prompt_set(request)
    prompt_set_service.ensure_shipped()
    queryset = PromptSet.objects.usable_by(request.user).order_by("owner_id", "name")
    return JsonResponse(
        {"results": [api.prompt_set_json(s, prompt_set_service.categories(s)) for s in queryset[:PAGE_SIZE]]}
    )


def _create_prompt_set(request):
    """{"name", "prompts": ["text", ...] or [{"prompt", "category"}, ...]}."""
    body, refusal = _json_body(request)
    if refusal:
        return refusal
    prompts = body.get("prompts")
    rows = []
    if not isinstance(prompts, list):
        return problems.invalid_input({"prompts": ['A list of prompts (text, or {"prompt", "category"}).']})
    for item in prompts[: prompt_set_service.MAX_PROMPTS + 1]:
        if isinstance(item, str):
            rows.append((item.strip(), ""))
        elif (
            isinstance(item, dict) and isinstance(item.get("prompt"), str) and isinstance(item.get("category", ""), str)
        ):
            rows.append((item["prompt"].strip(), item.get("category", "").strip()))
        else:
            return problems.invalid_input({"prompts": ['Each prompt is text, or {"prompt", "category"} of text.']})
    if any(not text for text, _ in rows):
        return problems.invalid_input({"prompts": ["A prompt is empty."]})
    try:
        name = body.get("name")
        created = prompt_set_service.create(request.user, name if isinstance(name, str) else "", rows)
    except prompt_set_service.SetError as exc:
        return problems.invalid_input(exc.errors)
    return JsonResponse(api.prompt_set_json(created, prompt_set_service.categories(created)), status=201)


# --- grids (issue 14): Lightbox's own /v1 extension (tags "lightbox" in openapi.json) ---


def _raw_grid_axes(axes):
    """The axes of a request body as the service takes them, or a problem."""
    if not isinstance(axes, list):
        return None, problems.invalid_input({"axes": ["Give a list of up to 3 axes."]})
    raw = []
    for index, axis in enumerate(axes[:4]):
        if not isinstance(axis, dict):
            return None, problems.invalid_input({f"axes[{index}]": ["Each axis is an object with a kind."]})
        values = axis.get("values", "")
        if isinstance(values, list):
            text_like = axis.get("kind") == "prompt" or any(isinstance(v, str) for v in values)
            values = ("|" if text_like else ", ").join(
                str(v).lower() if isinstance(v, bool) else str(v) for v in values[:1001]
            )
        if (
            not isinstance(values, str)
            or not isinstance(axis.get("field", ""), str)
            or not isinstance(axis.get("kind"), str)
        ):
            return None, problems.invalid_input(
                {f"axes[{index}]": ["kind and field are text; values are text or a list."]}
            )
        raw.append({"kind": axis["kind"], "field": axis.get("field", ""), "text": values})
    return raw, None


@api_view("GET", "POST")
def grids_list(request):
    if request.method == "POST":
        return _grid_create(request)
    base = _base(request)
    queryset = Grid.objects.filter(owner=request.user)

    def render(items):
        counts = grid_service.progress_of(items)
        return [api.grid_json(grid, base, counts.get(grid.pk, {})) for grid in items]

    return _page_response(request, queryset, render)


def _grid_create(request):
    body, problem = _json_body(request)
    if problem:
        return problem
    refs = body.get("versions")
    if not isinstance(refs, list) or not refs or len(refs) > 50:
        return problems.invalid_input({"versions": ["Give a list of 1 to 50 version ids."]})
    versions = [_resolve_version(request, ref) for ref in refs]
    missing = [str(ref)[:100] for ref, version in zip(refs, versions) if version is None]
    if missing:
        return problems.invalid_input({"versions": [f"No such version you may run: {', '.join(missing)}."]})
    given = body.get("input", {})
    if not isinstance(given, dict):
        return problems.invalid_input({"input": ["Input must be a JSON object."]})
    raw, problem = _raw_grid_axes(body.get("axes"))
    if problem:
        return problem
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= schema.MAX_SEED):
        return problems.invalid_input({"seed": [f"A whole number from 0 to {schema.MAX_SEED}."]})
    visibility = body.get("visibility") or settings.DEFAULT_API_VISIBILITY
    if visibility not in Visibility.values:
        return problems.invalid_input({"visibility": [f"One of: {', '.join(Visibility.values)}."]})
    title = body.get("title", "")
    if not isinstance(title, str) or payloads.find_bad_text(title, max_length=200):
        return problems.invalid_input({"title": ["Text of at most 200 characters."]})
    try:
        grid = grid_service.create(request.user, versions, given, raw, seed=seed, visibility=visibility, title=title)
    except grid_service.GridError as exc:
        if "limits" in exc.errors:
            return problems.problem(429, "Limit reached", " ".join(exc.errors["limits"]))
        return problems.invalid_input(exc.errors)
    return JsonResponse(api.grid_json(grid, _base(request)), status=201)


@api_view("GET")
def grid(request, grid_id):
    found, problem = _get_for_user(request, Grid.objects.all(), grid_id, "Grid")
    if problem:
        return problem
    return JsonResponse(api.grid_json(found, _base(request), grid_service.progress(found)))


@api_view("GET")
def grid_predictions(request, grid_id):
    """The grid's predictions the caller may see, each with its cell (x, y, z: an index per axis)."""
    found, problem = _get_for_user(request, Grid.objects.all(), grid_id, "Grid")
    if problem:
        return problem
    queryset = grid_service.cell_predictions(found).prefetch_related("version__model")
    base = _base(request)

    def render(items):
        outputs = api.outputs_by_prediction(items)
        results = []
        for prediction in items:
            if access_of(prediction, request.user) != Access.OPEN:
                continue
            coords = grid_service.full_coords(
                found, (prediction.cell_x, prediction.cell_y, prediction.cell_z), prediction.version_id
            )
            item = api.prediction_json(prediction, base, outputs[prediction.pk], viewer=request.user)
            item["cell"] = dict(zip("xyz", coords or ()))
            results.append(item)
        return results

    return _page_response(request, queryset, render)


@api_view("POST")
def grid_cancel(request, grid_id):
    found, problem = _get_for_user(request, Grid.objects.all(), grid_id, "Grid", owner_only=True)
    if problem:
        return problem
    grid_service.cancel(found)
    return JsonResponse(api.grid_json(found, _base(request), grid_service.progress(found)))


# --- end grids ---


# --- Arena and leaderboard (issue 15): a Lightbox extension of /v1 ----------------------


def _arena_scope(request):
    """(arena id, category, voter key, None) from the query, or (..., the problem to answer)."""
    run_id = request.GET.get("run", "")
    if "\x00" in run_id or "\x00" in request.GET.get("category", ""):
        return "", "", "", problems.problem(400, "Bad request", "Parameters may not contain NUL characters.")
    run = arena_service.arena_run(run_id, request.user)
    if run_id and run is None:
        return "", "", "", _not_found(f"Benchmark run {run_id[:40]}")
    mine = request.GET.get("mine", "") in ("1", "true")
    category = "" if mine else request.GET.get("category", "")[:100]
    return (run.pk if run else ""), category, (arena_service.voter_key_of(request.user) if mine else ""), None


@api_view("GET")
def arena_leaderboard(request):
    """The stored leaderboard (fitted by tasks.arena, never here): everyone's
    votes, one benchmark run's (?run=), one prompt category's (?category=),
    or your own (?mine=1). Before its first fit it answers computed_at null."""
    arena, category, voter_key, problem = _arena_scope(request)
    if problem:
        return problem
    stored = arena_service.board("" if voter_key else arena, category, voter_key)
    if category and stored is None:
        overall = arena_service.board(arena, "", "")
        if overall is None or category not in overall.data.get("categories", []):
            return _not_found(f"Prompt category {category!r}")
    if stored is None or stored.computed_at is None:
        arena_service.ensure_scheduled("" if voter_key else arena, voter_key)
    return JsonResponse(arena_service.leaderboard_json(stored, arena, category, voter_key))


@api_view("GET")
def arena_votes(request):
    """The votes behind a leaderboard as CSV, voters as pseudonyms (?mine=1: your own)."""
    arena, _, voter_key, problem = _arena_scope(request)
    if problem:
        return problem
    votes = arena_service.exported_votes(arena, request.user, mine=bool(voter_key))
    response = HttpResponse(arena_service.votes_csv(votes), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="arena-votes.csv"'
    return response
