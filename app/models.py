"""Catalog (Model, Version, Collection), Prediction and its Outputs, Training
(both Runs), Comparison, File, ApiToken.

Words have Replicate's meaning (docs/architecture.md). Models carry their
rows' own rules: the locked state transition that never leaves a terminal
state, visibility and hiding, named queryset filters. Workflows that reach
other subsystems (storage, backends, limits, tasks) are services
(app/services/), which call the models; models import only app/core.
"""

import base64
import hashlib
import secrets
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models.expressions import RawSQL
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from app.core import idempotency, logs, payloads, waits
from app.core.hardware import HARDWARE
from app.core.prepared import Prepared
from app.core.roles import is_moderator


def new_id():
    """128 random bits in Replicate's style: 26 lowercase base32 characters."""
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()


def new_version_id():
    return secrets.token_hex(32)


class Collection(models.Model):
    """A set of models staff curate (the admin), listed at /v1/collections
    beside the collections Lightbox makes itself (app.services.collections)."""

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=500)
    full_description = models.TextField(blank=True, help_text="Markdown.")

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.name


class ModelQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Public models, and the private ones of `user`."""
        if not user.is_authenticated:
            return self.filter(visibility=Model.Visibility.PUBLIC)
        return self.filter(models.Q(visibility=Model.Visibility.PUBLIC) | models.Q(user=user))

    def with_run_count(self):
        return self.annotate(run_count=models.Count("versions__predictions"))


class Model(models.Model):
    class Visibility(models.TextChoices):
        PUBLIC = "public", "Public"
        PRIVATE = "private", "Private (only its owner)"

    owner = models.SlugField(max_length=100)
    name = models.SlugField(max_length=100)
    # The account that made it through /v1 (its owner's username is `owner`),
    # which alone may change or delete it; empty for the catalog's models.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="models"
    )
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.PUBLIC)
    description = models.TextField(blank=True)
    readme = models.TextField(blank=True, help_text="Markdown.")
    cover_image_url = models.URLField(blank=True)
    github_url = models.URLField(blank=True)
    paper_url = models.URLField(blank=True)
    license_url = models.URLField(blank=True)
    weights_url = models.URLField(blank=True)
    # A sku of app.core.hardware: the kind of model server it is meant for.
    hardware = models.CharField(max_length=50, blank=True)
    collections = models.ManyToManyField(Collection, blank=True, related_name="models")
    created_at = models.DateTimeField(default=timezone.now)

    objects = ModelQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="model_owner_name")]
        ordering = ["owner", "name"]

    def __str__(self):
        return f"{self.owner}/{self.name}"

    @property
    def latest_version(self):
        # From the versions a list prefetched (one query for a page of models).
        prefetched = getattr(self, "_prefetched_objects_cache", {}).get("versions")
        if prefetched is not None:
            return max(prefetched, key=lambda version: version.created_at, default=None)
        return self.versions.order_by("-created_at").first()


class Version(models.Model):
    class Backend(models.TextChoices):
        COG = "cog", "Cog server"
        REPLICATE = "replicate", "Replicate"

    id = models.CharField(primary_key=True, max_length=64, default=new_version_id)
    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="versions")
    backend = models.CharField(max_length=20, choices=Backend.choices)
    # A Cog server's base URL, or the version id at Replicate.
    location = models.CharField(max_length=500)
    openapi_schema = models.JSONField(default=dict, blank=True)
    cog_version = models.CharField(max_length=50, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    # Seconds a prediction may run before the reconciler fails it.
    timeout = models.PositiveIntegerField(default=600)
    available = models.BooleanField(default=False)
    unavailable_reason = models.TextField(blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    # What a second of prediction time costs (USD). Empty: Replicate versions
    # use LIGHTBOX_REPLICATE_PRICE_PER_SECOND, our own Cog servers are free.
    price_per_second = models.DecimalField(max_digits=12, decimal_places=8, null=True, blank=True)
    # --- Fine-tuning (trainapi) ---
    # A Cog server in train mode (`--x-mode train`) that fine-tunes this
    # version: Lightbox's local model launcher fills it (serve_model), the admin
    # can; empty: a Cog version cannot be trained (Replicate's train on their cloud).
    trainer_location = models.CharField(max_length=500, blank=True, default="")
    # A fine-tune: the version it was trained from. It runs where its base runs,
    # with the base's schema and its `lora` input set to these weights (a URL
    # signed for the model server: app.services.trainings.weights_url).
    base = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="fine_tunes", editable=False
    )
    weights = models.FileField(upload_to="weights/", max_length=300, blank=True)
    # The word the fine-tune learned its subject as: the playground's prompt hint.
    trigger_word = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.model}:{self.id[:12]}"

    @property
    def is_fine_tune(self):
        return self.base_id is not None

    @property
    def trainable(self):
        return bool(self.trainer_location) or self.backend == self.Backend.REPLICATE

    @property
    def ref(self):
        return f"{self.model}:{self.id}"

    @property
    def input_schema(self):
        return self.openapi_schema.get("components", {}).get("schemas", {}).get("Input", {})

    @property
    def effective_price_per_second(self):
        if self.price_per_second is not None:
            return self.price_per_second
        if self.backend == self.Backend.REPLICATE:
            return settings.REPLICATE_PRICE_PER_SECOND
        return Decimal(0)

    def set_availability(self, available, reason=""):
        self.available = available
        self.unavailable_reason = "" if available else reason
        self.checked_at = timezone.now()
        self.save(update_fields=["available", "unavailable_reason", "checked_at"])


class Deployment(models.Model):
    """A version pinned under a name of its owner's, as Replicate's deployments:
    POST /v1/deployments/{owner}/{name}/predictions runs it on its version's
    pool of instances (Instance), at most `max_instances` at a time. Each change
    of version or configuration is a new release (`release` counts them)."""

    # Replicate's bounds for min_instances and max_instances.
    MAX_MIN_INSTANCES = 5
    MAX_MAX_INSTANCES = 20

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="deployments")
    name = models.SlugField(max_length=100)
    version = models.ForeignKey(Version, on_delete=models.PROTECT, related_name="deployments")
    # A sku of app.core.hardware: the kind of server its pool runs on.
    hardware = models.CharField(max_length=30, choices=HARDWARE, default="cpu")
    min_instances = models.PositiveSmallIntegerField(default=0)
    max_instances = models.PositiveSmallIntegerField(default=1)
    release = models.PositiveIntegerField(default=1)
    released_at = models.DateTimeField(default=timezone.now)
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="deployment_owner_name")]

    def __str__(self):
        return f"{self.owner.username}/{self.name}"


class InstanceQuerySet(models.QuerySet):
    def up(self):
        return self.filter(up=True)

    def free(self):
        return self.up().filter(prediction__isnull=True)

    def holding(self, prediction):
        return self.filter(prediction_id=prediction.pk)


class Instance(models.Model):
    """One Cog server of a version's pool, with its one slot: `prediction` is
    the prediction holding it (claimed atomically by app.services.pools, freed
    when that prediction ends or the instance is lost). A version with no
    instances runs on its `location` alone, as before pools."""

    version = models.ForeignKey(Version, on_delete=models.CASCADE, related_name="instances")
    url = models.CharField(max_length=500, help_text="The Cog server's base URL, e.g. http://10.0.0.5:5000")
    prediction = models.OneToOneField(
        "Prediction", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    up = models.BooleanField(default=True, editable=False)
    down_reason = models.TextField(blank=True, editable=False)
    checked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = InstanceQuerySet.as_manager()

    class Meta:
        ordering = ["version", "pk"]
        constraints = [models.UniqueConstraint(fields=["version", "url"], name="instance_version_url")]

    def __str__(self):
        return self.url

    def set_health(self, reason):
        """Record what a health check found: "" when the server answers."""
        self.up, self.down_reason, self.checked_at = not reason, reason, timezone.now()
        Instance.objects.filter(pk=self.pk).update(up=self.up, down_reason=reason, checked_at=self.checked_at)


class Visibility(models.TextChoices):
    """Who may see a prediction or a comparison (web runs default to unlisted, API runs to private)."""

    PUBLIC = "public", "Public (in the gallery)"
    UNLISTED = "unlisted", "Unlisted (anyone with the link)"
    PRIVATE = "private", "Private (only you)"


class ModeratedQuerySet(models.QuerySet):
    """Filters every page, list and API response must use (app.services.moderation).

    `public()` is the gallery; `visible_to(user)` is a listing that includes the
    user's own items; `accessible_to(user)` is what a user may open by its link.
    Hidden items show only to their owner (with the reason) and moderators.
    """

    def hidden(self):
        return self.filter(hidden_at__isnull=False)

    def not_hidden(self):
        return self.filter(hidden_at__isnull=True)

    def public(self):
        return self.filter(visibility="public", hidden_at__isnull=True)

    def with_open_reports(self):
        """The review queue: items with open reports, each with how many
        (`open_reports`), from how many accounts (`reporters`; anonymous
        reports count in `open_reports` only) and the latest (`last_reported`)."""
        open_ = models.Q(reports__state="open")
        return self.annotate(
            open_reports=models.Count("reports", filter=open_, distinct=True),
            reporters=models.Count("reports__reporter", filter=open_, distinct=True),
            last_reported=models.Max("reports__created_at", filter=open_),
        ).filter(open_reports__gt=0)

    def visible_to(self, user):
        if not user.is_authenticated:
            return self.public()
        listed = models.Q(visibility="public", hidden_at__isnull=True) | models.Q(owner=user)
        if is_moderator(user):
            listed |= models.Q(visibility="public")
        return self.filter(listed)

    def accessible_to(self, user):
        if is_moderator(user):
            return self.all()
        shared = models.Q(hidden_at__isnull=True) & ~models.Q(visibility="private")
        if user.is_authenticated:
            return self.filter(shared | models.Q(owner=user))
        return self.filter(shared)


class Access(models.TextChoices):
    """What a user gets of a Moderated item (Moderated.access_for); the label
    is what a placeholder says in its place."""

    OPEN = "open", "Open"
    PRIVATE = "private", "Private"
    HIDDEN = "hidden", "Hidden by moderators"


class Moderated(models.Model):
    """Something others can see, so something moderators can hide: hidden, it
    leaves every listing and its share links answer 410, until a moderator
    reviews it. Its owner still sees it, with the reason."""

    hidden_at = models.DateTimeField(null=True, blank=True)
    hidden_reason = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        abstract = True

    @property
    def is_hidden(self):
        return self.hidden_at is not None

    def hide(self, reason):
        # A plain UPDATE: hiding is independent of the prediction's status
        # transitions, which save only their own fields.
        self.hidden_at, self.hidden_reason = timezone.now(), reason[:500]
        type(self).objects.filter(pk=self.pk).update(hidden_at=self.hidden_at, hidden_reason=self.hidden_reason)

    def unhide(self):
        self.hidden_at, self.hidden_reason = None, ""
        type(self).objects.filter(pk=self.pk).update(hidden_at=None, hidden_reason="")

    def can_be_seen_by(self, user):
        """May `user` open this item by its link? (Hidden ones: see `is_hidden`.)"""
        if self.is_open_to_everyone:
            return True  # without asking whether `user` moderates: a query
        return user.is_authenticated and (self.owner_id == user.pk or is_moderator(user))

    def access_for(self, user):
        """The one rule for everything that shows this item to `user`: its
        page, its images (by session or signed link), its JSON, its card
        inside another item. A private one is not there (404); a shared one
        moderators hid is gone (410)."""
        if self.can_be_seen_by(user):
            return Access.OPEN
        if self.is_hidden and self.visibility != "private":
            return Access.HIDDEN
        return Access.PRIVATE

    @property
    def is_open_to_everyone(self):
        """Would a visitor who is not signed in get it? (Link previews.)"""
        return self.visibility != "private" and not self.is_hidden


class ComparisonQuerySet(ModeratedQuerySet):
    def standalone(self):
        """Comparisons started on their own, not as a cell of a grid or a
        prompt of a benchmark run (those are listed on their run's page)."""
        return self.filter(grid__isnull=True, benchmark__isnull=True)


class Comparison(Moderated):
    """One request fanned out to several versions: the input as the user gave
    it, one seed for all, and per version the changes the mapping made to fit
    that version's schema (app.services.comparisons)."""

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="comparisons"
    )
    input = models.JSONField(default=dict)
    seed = models.BigIntegerField(null=True, blank=True)
    # Values of one version's own (advanced) fields: {version id: {field: value}}
    extra_input = models.JSONField(default=dict, blank=True)
    # {version id: [{"field", "given", "used", "reason"}, ...]}
    changes = models.JSONField(default=dict, blank=True)
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.UNLISTED)
    created_at = models.DateTimeField(default=timezone.now)
    # A grid's cells across its version axis, or one prompt and seed of a
    # benchmark run across its versions, are each one comparison.
    grid = models.ForeignKey("Grid", null=True, blank=True, on_delete=models.CASCADE, related_name="comparisons")
    grid_x = models.PositiveSmallIntegerField(default=0)
    grid_y = models.PositiveSmallIntegerField(default=0)
    grid_z = models.PositiveSmallIntegerField(default=0)
    benchmark = models.ForeignKey(
        "BenchmarkRun", null=True, blank=True, on_delete=models.CASCADE, related_name="comparisons"
    )
    benchmark_prompt = models.ForeignKey(
        "Prompt", null=True, blank=True, on_delete=models.PROTECT, related_name="comparisons"
    )

    objects = ComparisonQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["owner", "-created_at"], name="comparison_owner_created")]

    def __str__(self):
        return self.id

    @classmethod
    def from_db(cls, db, field_names, values):
        return _writable_json(super().from_db(db, field_names, values), ("input", "extra_input", "changes"))

    def get_absolute_url(self):
        return reverse("comparison", args=[self.id])

    @property
    def prompt(self):
        return self.input.get("prompt", "")

    def set_visibility(self, visibility):
        """Share (or hide) the comparison and its predictions together."""
        self.visibility = visibility
        self.save(update_fields=["visibility"])
        self.predictions.update(visibility=visibility)

    @property
    def is_terminal(self):
        return all(prediction.is_terminal for prediction in self.predictions.all())

    def hide(self, reason):
        """Hide the comparison and its predictions (they show the same images)."""
        super().hide(reason)
        for prediction in self.predictions.not_hidden():
            prediction.hide(reason)

    def unhide(self):
        super().unhide()
        for prediction in self.predictions.hidden():
            prediction.unhide()


class Grid(Moderated):
    """An X/Y/Z plot: one input with up to three axes of values (versions, a
    schema field, prompt search/replace, seeds). Each cell group across the
    version axis is one Comparison (grid, grid_x, grid_y, grid_z); without
    a version axis each cell is a comparison of one version."""

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="grids"
    )
    title = models.CharField(max_length=200, blank=True, default="")
    # The input as the user gave it, before any axis value is applied.
    input = models.JSONField(default=dict)
    extra_input = models.JSONField(default=dict, blank=True)
    seed = models.BigIntegerField(null=True, blank=True)
    # [{"kind": "version"|"field"|"prompt"|"seed", "field": ..., "text": the spec typed, "values": [...]}], X, Y, Z
    axes = models.JSONField(default=list)
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.UNLISTED)
    created_at = models.DateTimeField(default=timezone.now)
    canceled_at = models.DateTimeField(null=True, blank=True)
    # grid: the chosen versions' ids in order (the model axis's values, or
    # the one version of a grid without one).
    version_ids = models.JSONField(default=list)
    # grid: {"x.y.z.version id": {"kind": "n/a" | "error", "reason": ...}}:
    # cells that do not apply to a version, or that could not start.
    problems = models.JSONField(default=dict, blank=True)
    # grid: the predictions it runs (cells x versions, less those that do
    # not apply), and when the task had started all it could.
    planned = models.PositiveIntegerField(default=0)
    materialised_at = models.DateTimeField(null=True, blank=True)

    objects = ModeratedQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["owner", "-created_at"], name="grid_owner_created")]

    def __str__(self):
        return self.title or self.id

    @classmethod
    def from_db(cls, db, field_names, values):
        return _writable_json(super().from_db(db, field_names, values), ("input", "extra_input", "axes", "problems"))

    def get_absolute_url(self):
        return reverse("grid", args=[self.id])

    @property
    def prompt(self):
        return self.input.get("prompt", "")


class PromptSetQuerySet(models.QuerySet):
    def usable_by(self, user):
        """The shipped sets and the user's own."""
        if user is None or not user.is_authenticated:
            return self.filter(owner__isnull=True)
        return self.filter(models.Q(owner__isnull=True) | models.Q(owner=user))


class PromptSet(models.Model):
    """A list of prompts with categories: shipped (PartiPrompts, GenEval; no
    owner) or a user's own."""

    slug = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="prompt_sets"
    )
    description = models.TextField(blank=True, default="")
    license = models.CharField(max_length=100, blank=True, default="")
    attribution = models.TextField(blank=True, default="")
    source_url = models.URLField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    objects = PromptSetQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "slug"], name="prompt_set_owner_slug"),
            models.UniqueConstraint(
                fields=["slug"], condition=models.Q(owner__isnull=True), name="prompt_set_shipped_slug"
            ),
        ]

    def __str__(self):
        return self.name


class Prompt(models.Model):
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.CASCADE, related_name="prompts")
    position = models.PositiveIntegerField()
    text = models.TextField()
    category = models.CharField(max_length=100, blank=True, default="")
    # PartiPrompts' challenge level, GenEval's task details: what the set gives besides a category.
    challenge = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        ordering = ["prompt_set", "position"]
        constraints = [models.UniqueConstraint(fields=["prompt_set", "position"], name="prompt_position")]
        indexes = [models.Index(fields=["prompt_set", "category"], name="prompt_set_category")]

    def __str__(self):
        return self.text[:80]


class BenchmarkRun(Moderated):
    """Versions x prompts (all of a set, a category, or a sample of N fixed
    by sample_seed) x seeds. Each prompt and seed is one Comparison across
    the versions (benchmark, benchmark_prompt, seed). Resumable: stopping
    cancels what has not run; going on starts what has not succeeded."""

    class Status(models.TextChoices):
        RUNNING = "running"
        STOPPED = "stopped"
        FINISHED = "finished"

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="benchmark_runs"
    )
    title = models.CharField(max_length=200, blank=True, default="")
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.PROTECT, related_name="benchmark_runs")
    versions = models.ManyToManyField(Version, related_name="benchmark_runs")
    category = models.CharField(max_length=100, blank=True, default="")
    sample_size = models.PositiveIntegerField(null=True, blank=True)
    sample_seed = models.BigIntegerField(default=0)
    seeds = models.JSONField(default=list)
    # Input besides prompt and seed (steps, size...), mapped to each version as comparisons map it.
    input = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.UNLISTED)
    created_at = models.DateTimeField(default=timezone.now)
    # --- bench: what the pages and /v1 read without planning the run again ---
    # Comparisons the run is made of (prompts x seeds), fixed at creation.
    planned = models.PositiveIntegerField(default=0)
    # Why the run waits or stopped by itself (a limit, a version offline); "" when nothing holds it.
    note = models.CharField(max_length=500, blank=True, default="")
    # Prompts no version could take (a blocked term...): {"<prompt id>:<seed>": why}; going on tries them again.
    skipped = models.JSONField(default=dict, blank=True)
    # A run started because a watched model got a new version: the reference run it repeats.
    baseline = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="followups")

    objects = ModeratedQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["owner", "-created_at"], name="benchmark_owner_created")]

    def __str__(self):
        return self.title or self.id

    def get_absolute_url(self):
        return reverse("benchmark", args=[self.id])


class Watch(models.Model):
    """A user's reference benchmark run for a model: each new version of the
    model runs the same prompts and seeds (app.services.benchmarks)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="watches")
    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="watches")
    run = models.ForeignKey(BenchmarkRun, on_delete=models.CASCADE, related_name="watches")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "model"], name="watch_user_model")]

    def __str__(self):
        return f"{self.user} watches {self.model}"


class RunQuerySet(models.QuerySet):
    """Filters every run (a Prediction, a Training) has."""

    def active(self):
        return self.filter(status__in=self.model.ACTIVE)


class Run(models.Model):
    """What a prediction and a training share: a job handed to a backend
    (a Cog server or Replicate), its recovery fields that the reconciler
    reads, the caller's webhook, and the one locked state change."""

    class Status(models.TextChoices):
        STARTING = "starting"
        PROCESSING = "processing"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELED = "canceled"

    class Source(models.TextChoices):
        WEB = "web"
        API = "api"

    TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELED)
    ACTIVE = (Status.STARTING, Status.PROCESSING)

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    input = models.JSONField(default=dict)
    # The backend's own output (URLs or data URIs) until stored; then the API
    # shows our stored copies instead (a prediction's Output rows, a
    # training's new version and its weights).
    output = models.JSONField(null=True, blank=True)
    logs = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.STARTING)
    source = models.CharField(max_length=5, choices=Source.choices, default=Source.API)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    predict_time = models.FloatField(null=True, blank=True)
    # The id at the backend, set once the backend accepted the run.
    remote_id = models.CharField(max_length=100, blank=True, default="")
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # Times handed to a backend (more than once only if a backend lost it).
    dispatch_attempts = models.PositiveIntegerField(default=0)
    # Last time a worker tried to hand it over; the reconciler re-sends
    # runs whose message the broker lost.
    attempted_at = models.DateTimeField(null=True, blank=True)
    # Last time the backend told us anything; the reconciler watches it.
    heard_at = models.DateTimeField(null=True, blank=True)
    # Which run of the model server accepted it (a Cog server's setup start
    # time; empty when unknown): a different one later means the server
    # restarted and lost it, as mere silence does not (its webhook may be late).
    server_boot = models.CharField(max_length=64, blank=True, default="")
    # The caller's webhook (API), and which events it wants.
    webhook = models.URLField(max_length=1000, blank=True, default="")
    webhook_events_filter = models.JSONField(default=list, blank=True)
    # When the last non-terminal event went to the caller's webhook; a
    # prediction's logs and output events are throttled
    # (app.services.predictions.WEBHOOK_THROTTLE).
    webhook_sent_at = models.DateTimeField(null=True, blank=True)
    # USD: estimated when it starts (app.services.limits), settled from the predict time
    # when it ends. Monthly spend caps add these up.
    cost = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    def __str__(self):
        return self.id

    @property
    def is_terminal(self):
        return self.status in self.TERMINAL

    @property
    def total_time(self):
        if self.completed_at:
            return (self.completed_at - self.created_at).total_seconds()
        return None

    @property
    def progress(self):
        """(step, total) from the last "step k/N" line of the logs, or None."""
        return logs.progress(self.logs)

    @property
    def percent(self):
        if self.status == self.Status.SUCCEEDED:
            return 100
        progress = self.progress
        return int(100 * progress[0] / progress[1]) if progress and progress[1] else 0

    # --- State changes -----------------------------------------------------
    # Every change goes through _transition, which locks the row and refuses
    # to touch a terminal run: a late webhook or a retried task can never
    # undo "succeeded", "failed" or "canceled".

    def _transition(self, **changes):
        with transaction.atomic():
            row = type(self).objects.select_for_update().get(pk=self.pk)
            if row.is_terminal:
                self.refresh_from_db()
                return False
            for field, value in changes.items():
                setattr(row, field, value)
            row.save(update_fields=list(changes))
            if row.is_terminal:
                row._ended()
        self.refresh_from_db()
        return True

    def _ended(self):
        """What else the commit that ends this run does (called on the
        locked row, just saved terminal); nothing unless a kind says so."""

    def mark_dispatched(self, remote_id="", server_boot=""):
        now = timezone.now()
        return self._transition(
            remote_id=remote_id or self.id,
            dispatched_at=now,
            heard_at=now,
            # Counted in the row: a rerun may hand it over while a late first
            # hand-over is still recording, and neither may lose the other's count.
            dispatch_attempts=models.F("dispatch_attempts") + 1,
            server_boot=server_boot,
        )

    def wants_event(self, event):
        return not self.webhook_events_filter or event in self.webhook_events_filter


class PredictionQuerySet(ModeratedQuerySet, RunQuerySet):
    def held(self):
        """Batch predictions the scheduler has not let go yet (app.services.scheduling)."""
        return self.active().filter(queued_at__isnull=False, released_at__isnull=True)

    def not_held(self):
        return self.filter(models.Q(queued_at__isnull=True) | models.Q(released_at__isnull=False))

    def interactive(self):
        """Not started as part of a batch (a grid, a benchmark run)."""
        return self.filter(queued_at__isnull=True)

    def for_model(self, model):
        return self.filter(version__model=model)

    def ahead_of(self, prediction):
        """Active predictions sent to the same model server before `prediction`:
        a Cog server runs one at a time, so these go first."""
        ahead = self.active().filter(
            version__location=prediction.version.location, created_at__lt=prediction.created_at
        )
        if prediction.queued_at is None:
            # Held batch work goes after a prediction started by hand (app.services.scheduling).
            ahead = ahead.not_held()
        return ahead

    def recent_predict_times(self, version_id, steps=None, count=20):
        """The predict times of the version's last `count` succeeded runs
        (with `steps` steps, when given): what the next one will likely take."""
        runs = self.filter(version_id=version_id, status="succeeded", predict_time__isnull=False)
        if steps is not None:
            runs = runs.filter(input__num_inference_steps=steps)
        return list(runs.order_by("-created_at").values_list("predict_time", flat=True)[:count])

    def search(self, text):
        """Predictions whose prompt matches `text`: PostgreSQL full-text search
        (on the stored, indexed prompt_search column of migration 0004, which
        the model does not declare: SQLite has no tsvector), a plain match elsewhere."""
        if connection.vendor == "postgresql":
            return self.filter(
                RawSQL(
                    "app_prediction.prompt_search @@ websearch_to_tsquery('english', %s)",
                    [text],
                    output_field=models.BooleanField(),
                )
            )
        return self.filter(input__prompt__icontains=text)


class Prediction(Moderated, Run):
    class ErrorCode(models.TextChoices):
        """Why a prediction failed, where something acts on the reason (not
        its words, which are for people)."""

        # The model ran, but its server could not hand an output over to us
        # (its one upload failed): the run is repeated once (output_reruns).
        OUTPUT_NOT_RECEIVED = "output_not_received", "Output not received"
        # The outputs reached us but could not be stored (a full disk).
        OUTPUT_NOT_STORED = "output_not_stored", "Outputs not stored"

    version = models.ForeignKey(Version, on_delete=models.PROTECT, related_name="predictions")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="predictions"
    )
    comparison = models.ForeignKey(
        Comparison, null=True, blank=True, on_delete=models.CASCADE, related_name="predictions"
    )
    # The deployment it was made through (/v1/deployments/.../predictions).
    deployment = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.SET_NULL, related_name="predictions"
    )
    # The instance of its version's pool it was last handed to.
    instance = models.ForeignKey(Instance, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.PRIVATE)
    error_code = models.CharField(max_length=30, choices=ErrorCode.choices, blank=True, default="")
    # Runs repeated because the model server could not deliver an output: at
    # most one (app.services.predictions.rerun_lost_output).
    output_reruns = models.PositiveSmallIntegerField(default=0)
    # --- Fair scheduling (app.services.scheduling) ---
    # A batch prediction (a grid's or a benchmark run's) is saved held in the
    # scheduler's queue at `queued_at`, with no message to the broker; the
    # scheduler lets it go (`released_at`) when its model server has a free
    # slot that no interactive prediction waits for. Its status stays
    # "starting" meanwhile: Replicate's statuses are the API's.
    queued_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)

    objects = PredictionQuerySet.as_manager()

    class Meta(Run.Meta):
        permissions = [("disable_safety_checker", "Can turn off a model's safety checker")]
        indexes = [
            models.Index(fields=["status", "created_at"], name="prediction_status_created"),
            models.Index(fields=["owner", "-created_at"], name="prediction_owner_created"),
            models.Index(fields=["visibility", "-created_at"], name="prediction_vis_created"),
            # The scheduler's queue: only held predictions are in it.
            models.Index(
                fields=["version", "owner", "created_at"],
                name="prediction_held",
                condition=models.Q(queued_at__isnull=False, released_at__isnull=True),
            ),
            # Whose turn it is: when each user's batch work was last let go.
            models.Index(
                fields=["version", "owner", "released_at"],
                name="prediction_batch_released",
                condition=models.Q(queued_at__isnull=False, released_at__isnull=False),
            ),
        ]

    @classmethod
    def from_db(cls, db, field_names, values):
        return _writable_json(super().from_db(db, field_names, values), ("input",))

    def get_absolute_url(self):
        return reverse("prediction", args=[self.id])

    def _ended(self):
        if self.queued_at and not self.released_at:
            # An end (a cancel) takes it out of the scheduler's queue.
            Prediction.objects.filter(pk=self.pk).update(released_at=timezone.now())
        # Its instance's slot is free in the same commit, so a crash after it
        # cannot leak the slot.
        Instance.objects.holding(self).update(prediction=None)
        waits.ended(self.pk)


def _writable_json(instance, fields):
    """A row as it loads, with its JSON made showable: rows stored before
    inputs were checked (app.core.payloads) may hold a lone surrogate, which no
    page can encode, or nesting no template can render."""
    for name in fields:
        if name in instance.__dict__:
            setattr(instance, name, payloads.writable(instance.__dict__[name]))
    return instance


def output_upload_to(instance, filename):
    return f"outputs/{instance.prediction_id[:2]}/{instance.prediction_id}/{filename}"


class Output(models.Model):
    class Rating(models.TextChoices):
        SAFE = "safe"
        NSFW = "nsfw"
        BLOCKED = "blocked"

    prediction = models.ForeignKey(Prediction, on_delete=models.CASCADE, related_name="outputs")
    index = models.PositiveSmallIntegerField()
    file = models.FileField(upload_to=output_upload_to, max_length=300)
    thumbnail = models.FileField(upload_to=output_upload_to, max_length=300, blank=True)
    content_type = models.CharField(max_length=100, default="image/png")
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64)
    rating = models.CharField(max_length=10, choices=Rating.choices, default=Rating.SAFE)
    # For nsfw outputs: the only picture of it anonymous visitors and users who
    # did not opt in ever get (made on the server, app.core.images.blurred_thumbnail).
    blurred_thumbnail = models.FileField(upload_to=output_upload_to, max_length=300, blank=True)

    class Meta:
        # By the column: "prediction" would order by Prediction.Meta.ordering,
        # joining app_prediction into every query for a prediction's outputs.
        ordering = ["prediction_id", "index"]
        constraints = [models.UniqueConstraint(fields=["prediction", "index"], name="output_prediction_index")]

    def __str__(self):
        return f"{self.prediction_id}/{self.index}"

    # Every file stored for an output; what deletes one deletes them all.
    FILE_FIELDS = ("file", "thumbnail", "blurred_thumbnail")

    def stored_files(self):
        """The FieldFiles of FILE_FIELDS that hold a file."""
        return [getattr(self, name) for name in self.FILE_FIELDS if getattr(self, name)]

    def block(self):
        """Delete the image files for good; the row stays (rating blocked, hash kept)."""
        for field_file in self.stored_files():
            field_file.delete(save=False)
        self.rating = self.Rating.BLOCKED
        self.save(update_fields=["rating", *self.FILE_FIELDS])

    def shows_explicit_to(self, user):
        """Whether `user` gets this image itself, rather than its blurred thumbnail."""

        if self.rating == self.Rating.SAFE:
            return True
        if self.rating == self.Rating.BLOCKED or not user.is_authenticated:
            return False
        return self.prediction.owner_id == user.pk or is_moderator(user) or ContentPreference.objects.shows_nsfw(user)

    def thumbnail_for(self, user):
        """The thumbnail a listing shows `user`: blurred for nsfw unless they may
        see it, None once blocked."""
        field = self.thumbnail_field_for(user)
        return (getattr(self, field) or None) if field else None

    def thumbnail_field_for(self, user):
        """Which of the thumbnail fields a listing shows `user`, or None once
        blocked (a grid page reads the fields as values, not as rows)."""
        if self.rating == self.Rating.BLOCKED:
            return None
        return "thumbnail" if self.shows_explicit_to(user) else "blurred_thumbnail"


class Upload(models.Model):
    """A file a Cog server PUT to us (--upload-url) before its webhook names it."""

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    # The location of the Cog server whose upload token brought it: only that
    # server's predictions may take it (app.services.storage.upload_for).
    server = models.CharField(max_length=500, blank=True)
    remote_prediction_id = models.CharField(max_length=100, blank=True)
    file = models.FileField(upload_to="uploads/", max_length=300)
    content_type = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)


class IdempotencyKeyQuerySet(models.QuerySet):
    def expired(self):
        return self.filter(created_at__lt=timezone.now() - IdempotencyKey.TTL)


class IdempotencyKey(models.Model):
    """The `Idempotency-Key` of an API create: the same user sending the same
    key within TTL gets the prediction it started, not a second one. Saved in
    the transaction that saves the prediction; the unique constraint, not a
    look before, makes concurrent duplicates start exactly one."""

    TTL = timedelta(hours=24)

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=idempotency.MAX_LENGTH)
    # sha256 of the request (endpoint and body): the same key with another request is refused.
    fingerprint = models.CharField(max_length=64)
    prediction = models.ForeignKey(Prediction, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    objects = IdempotencyKeyQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_user_key")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self):
        return self.key

    @property
    def is_expired(self):
        return self.created_at < timezone.now() - self.TTL


def file_upload_to(instance, filename):
    return f"files/{instance.id[:2]}/{instance.id}/{filename}"


class FileQuerySet(models.QuerySet):
    def live(self):
        return self.filter(expires_at__gt=timezone.now())

    def expired(self):
        return self.filter(expires_at__lte=timezone.now())


class File(models.Model):
    """A file a user uploaded through /v1/files to give as a prediction's
    input (Replicate's files API); gone at `expires_at` (app.services.files)."""

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="files")
    file = models.FileField(upload_to=file_upload_to, max_length=300)
    # The name the client gave, as it gave it (shown, never used as a path).
    name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    objects = FileQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="file_owner_created"),
            models.Index(fields=["expires_at"], name="file_expires"),
        ]

    def __str__(self):
        return self.id


class ReconcilerState(models.Model):
    """The reconciler's one row: when beat last ran it, when a run last ended,
    and the lease that lets one run at a time, whoever starts it (beat, or a
    worker standing in for a late beat: tasks.standby).

    A lease, not a lock held in a transaction: a run makes HTTP calls for
    seconds, and on SQLite an open write transaction would stop every other
    writer meanwhile. A holder renews it before each step and stops when it
    lost it; a holder that died leaves a lease that expires."""

    SINGLETON = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON, editable=False)
    # When a run that beat scheduled last reached a worker: beat is alive,
    # and its messages get through.
    beat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    finished_by = models.CharField(max_length=200, blank=True)
    holder = models.CharField(max_length=200, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = verbose_name_plural = "reconciler"

    def __str__(self):
        return "the reconciler"

    @classmethod
    def current(cls):
        return cls.objects.get_or_create(pk=cls.SINGLETON)[0]

    def beat_problem(self, now=None):
        """Why beat is not keeping its schedule (three reconcile intervals
        without its run), or "": /healthz fails with it and the admin shows it."""
        now, interval = now or timezone.now(), settings.RECONCILE_INTERVAL
        if self.beat_at is None:
            reason = "beat has never run the reconciler"
        elif now - self.beat_at > timedelta(seconds=3 * interval):
            reason = (
                f"beat last ran the reconciler {(now - self.beat_at).total_seconds():.0f} s ago "
                f"(at {self.beat_at:%Y-%m-%d %H:%M:%S} UTC; it runs it every {interval:g} s)"
            )
        else:
            return ""
        if self.finished_at and now - self.finished_at <= timedelta(seconds=3 * interval):
            ago = (now - self.finished_at).total_seconds()
            return f"{reason}; workers run it meanwhile (last {ago:.0f} s ago, by {self.finished_by})"
        return f"{reason}, and no worker has run it since"

    def overdue(self, now=None):
        """No run has ended for two reconcile intervals and none holds the
        lease: beat is late, and a worker should run it (tasks.standby)."""
        now = now or timezone.now()
        late = self.finished_at is None or now - self.finished_at > timedelta(seconds=2 * settings.RECONCILE_INTERVAL)
        return late and (self.lease_until is None or self.lease_until < now)

    @classmethod
    def beat_ran(cls):
        cls.current()
        cls.objects.filter(pk=cls.SINGLETON).update(beat_at=timezone.now())

    @classmethod
    def acquire(cls, holder, lease):
        """Take the lease if nobody holds it (or its holder's ran out): one
        conditional UPDATE, atomic on PostgreSQL and SQLite alike."""
        cls.current()
        now = timezone.now()
        free = models.Q(lease_until__isnull=True) | models.Q(lease_until__lt=now)
        return cls.objects.filter(free, pk=cls.SINGLETON).update(holder=holder, lease_until=now + lease) == 1

    @classmethod
    def renew(cls, holder, lease):
        """Extend the lease; False when it is no longer ours (it ran out and
        another run took it): then stop acting."""
        until = timezone.now() + lease
        return cls.objects.filter(pk=cls.SINGLETON, holder=holder).update(lease_until=until) == 1

    @classmethod
    def release(cls, holder, finished):
        changes = {"lease_until": None, "holder": ""}
        if finished:
            changes.update(finished_at=timezone.now(), finished_by=holder)
        cls.objects.filter(pk=cls.SINGLETON, holder=holder).update(**changes)


class ApiTokenQuerySet(models.QuerySet):
    def authenticate(self, raw):
        if not raw:
            return None
        token = ACTIVE_TOKEN.first(ApiToken.hash(raw))
        if token is None or not token.user.is_active:
            return None
        if not token.last_used_at or timezone.now() - token.last_used_at > timedelta(minutes=5):
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
        return token.user


class ApiToken(models.Model):
    """A bearer token for /v1. Only its hash is stored; the raw value is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    def __str__(self):
        return f"{self.prefix}… ({self.user})"

    @staticmethod
    def hash(raw):
        return hashlib.sha256(raw.encode()).hexdigest()

    @classmethod
    def issue(cls, user, name=""):
        """Create a token and return (token, raw value)."""
        raw = "lb_" + secrets.token_urlsafe(30)
        token = cls.objects.create(user=user, name=name, key_hash=cls.hash(raw), prefix=raw[:10])
        return token, raw

    def revoke(self):
        self.revoked_at = timezone.now()
        self.save(update_fields=["revoked_at"])


# Every /v1 request asks for its token (app.core.prepared says why compiled once).
ACTIVE_TOKEN = Prepared(
    lambda key_hash: ApiToken.objects.select_related("user").filter(key_hash=key_hash, revoked_at__isnull=True)
)


def new_invite_code():
    """128 random bits, URL-safe (22 characters)."""
    return secrets.token_urlsafe(16)


class InviteQuerySet(models.QuerySet):
    def usable(self):
        return self.filter(used_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=timezone.now())
        )


class Invite(models.Model):
    """A single-use code that lets one person sign up while LIGHTBOX_SIGNUP is
    "invite". Staff make them in the admin or with `manage.py create_invite`
    and send the sign-up link, which fills the code in."""

    code = models.CharField(max_length=32, unique=True, default=new_invite_code, editable=False)
    note = models.CharField(max_length=200, blank=True, help_text="Who it is for (staff only).")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: it does not expire.")
    used_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Set once, when someone signs up with it; it stays used if they leave.
    used_at = models.DateTimeField(null=True, blank=True)

    objects = InviteQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.code

    @property
    def signup_url(self):
        return f"{settings.SITE_URL}{reverse('signup')}?{urlencode({'invite': self.code})}"

    @property
    def is_expired(self):
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @classmethod
    def problem_with(cls, invite):
        """Why `invite` (an Invite or None) cannot be used, or "" if it can."""
        if invite is None:
            return "This invite code is not valid. Check it against the link you were sent."
        if invite.used_at is not None:
            return "This invite code has already been used. Ask for a new one."
        if invite.is_expired:
            return f"This invite code expired on {invite.expires_at:%Y-%m-%d %H:%M} UTC. Ask for a new one."
        return ""

    @classmethod
    def claim(cls, code):
        """The invite with this code, locked until the transaction ends, so
        that two people cannot both sign up with it. Raises ValidationError if
        it cannot be used. Call inside the transaction that saves the user."""
        invite = cls.objects.select_for_update().filter(code=code).first()
        problem = cls.problem_with(invite)
        if problem:
            raise ValidationError(problem, code="invalid_invite")
        return invite

    def use(self, user):
        self.used_by, self.used_at = user, timezone.now()
        self.save(update_fields=["used_by", "used_at"])


# --- Moderation, content safety and limits (app.services.moderation, app.services.limits) ----------


class Report(models.Model):
    """Someone's report of a prediction or a comparison. Reports from distinct
    trusted users (moderation.trusted_reporters) hide a shared item at
    REPORT_THRESHOLD; the others only reach the review queue."""

    class Reason(models.TextChoices):
        SEXUAL = "sexual", "Sexual content"
        VIOLENCE = "violence", "Violence"
        ILLEGAL = "illegal", "Illegal content"
        SPAM = "spam", "Spam"
        OTHER = "other", "Other"

    class State(models.TextChoices):
        OPEN = "open", "Open"
        DISMISSED = "dismissed", "Dismissed (item approved)"
        ACTIONED = "actioned", "Acted on"

    prediction = models.ForeignKey(Prediction, null=True, blank=True, on_delete=models.CASCADE, related_name="reports")
    comparison = models.ForeignKey(Comparison, null=True, blank=True, on_delete=models.CASCADE, related_name="reports")
    reporter = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="reports_made"
    )
    reason = models.CharField(max_length=10, choices=Reason.choices)
    text = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(prediction__isnull=False, comparison__isnull=True)
                | models.Q(prediction__isnull=True, comparison__isnull=False),
                name="report_one_target",
            )
        ]
        indexes = [models.Index(fields=["state", "-created_at"], name="report_state_created")]

    def __str__(self):
        return f"{self.get_reason_display()} report on {self.target}"

    @property
    def target(self):
        return self.prediction or self.comparison


class ModerationAction(models.Model):
    """The audit trail: every moderation action, who took it, when and why.
    `moderator` is empty when the site acted by itself (reports reaching the
    threshold)."""

    class Kind(models.TextChoices):
        APPROVE = "approve", "Approved (reports dismissed)"
        HIDE = "hide", "Hidden"
        AUTO_HIDE = "auto_hide", "Hidden by reports"
        UNHIDE = "unhide", "Shown again"
        MARK_NSFW = "mark_nsfw", "Marked NSFW"
        DELETE_OUTPUTS = "delete_outputs", "Outputs deleted"
        BAN = "ban", "User banned"
        UNBAN = "unban", "Ban lifted"
        # The arena (ArenaVote): a voter's votes left out of or back in the leaderboard, votes deleted.
        ARENA_EXCLUDE = "arena_exclude", "Arena votes excluded"
        ARENA_INCLUDE = "arena_include", "Arena votes counted again"
        ARENA_REMOVE = "arena_remove", "Arena votes removed"

    created_at = models.DateTimeField(default=timezone.now)
    moderator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    reason = models.TextField(blank=True)
    prediction = models.ForeignKey(
        Prediction, null=True, blank=True, on_delete=models.SET_NULL, related_name="moderation_actions"
    )
    comparison = models.ForeignKey(
        Comparison, null=True, blank=True, on_delete=models.SET_NULL, related_name="moderation_actions"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="moderation_history"
    )
    # What was acted on, in words: it outlives deleted rows.
    target = models.CharField(max_length=200)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self):
        return f"{self.get_kind_display()}: {self.target}"


class Ban(models.Model):
    """A banned user's runs are refused and their shared items hidden."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ban")
    reason = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self):
        return f"{self.user} (banned)"


class BlockedTerm(models.Model):
    """A word or phrase no prompt may contain (whole words, any case)."""

    term = models.CharField(max_length=200, unique=True)
    note = models.CharField(max_length=200, blank=True, help_text="Why it is blocked (moderators only).")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["term"]

    def __str__(self):
        return self.term


class GroupLimits(models.Model):
    """Limits for the members of a group. A member of several groups gets the
    most generous of each; users in no group with limits get the LIGHTBOX_*
    defaults. An empty field means no limit."""

    group = models.OneToOneField("auth.Group", on_delete=models.CASCADE, related_name="limits")
    predictions_per_minute = models.PositiveIntegerField(null=True, blank=True)
    predictions_per_day = models.PositiveIntegerField(null=True, blank=True)
    concurrent_predictions = models.PositiveIntegerField(null=True, blank=True)
    monthly_spend = models.DecimalField(
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="USD a member may spend a month on versions that run on the site's Replicate token.",
    )

    class Meta:
        verbose_name_plural = "group limits"

    def __str__(self):
        return f"Limits of {self.group}"


class ContentPreferenceQuerySet(models.QuerySet):
    def shows_nsfw(self, user):
        """Did `user` opt in to see NSFW images unblurred? Read once per user
        object (a request's), as roles.is_moderator is: a page of NSFW images
        asks it for each."""
        if not user.is_authenticated:
            return False
        cached = getattr(user, "_lightbox_shows_nsfw", None)
        if cached is None:
            cached = self.filter(user=user, show_nsfw=True).exists()
            user._lightbox_shows_nsfw = cached
        return cached


class ContentPreference(models.Model):
    """What a signed-in user chose to see: NSFW images unblurred (opt-in)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="content_preference")
    show_nsfw = models.BooleanField(default=False)

    objects = ContentPreferenceQuerySet.as_manager()

    def __str__(self):
        return f"{self.user}: {'shows' if self.show_nsfw else 'blurs'} NSFW"


class NoticeQuerySet(models.QuerySet):
    def unread(self):
        return self.filter(read_at__isnull=True)


class Notice(models.Model):
    """A message from the site to one user (a moderator's decision on their
    item or on their report), shown on their pages until they dismiss it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notices")
    text = models.CharField(max_length=1000)
    url = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    objects = NoticeQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["user", "read_at"], name="notice_user_read")]

    def __str__(self):
        return self.text


# --- Fine-tuning (trainapi) -----------------------------------------------------


class TrainingQuerySet(RunQuerySet):
    def for_user(self, user):
        return self.filter(owner=user)


def training_upload_to(instance, filename):
    return f"trainings/{instance.pk[:2]}/{instance.pk}/{filename}"


class Training(Run):
    """A fine-tune of `version` (its base) into a new version of
    `destination`, as Replicate's trainings: it runs on the base's trainer (a
    Cog server in train mode, Version.trainer_location) or on Replicate's
    cloud, through the same engine as predictions (dispatch, webhooks, the
    reconciler); app.services.trainings is its lifecycle."""

    version = models.ForeignKey(Version, on_delete=models.PROTECT, related_name="trainings")
    destination = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="trainings")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="trainings")
    # Its `input` is as given (an archive given inline is named, not kept
    # there); the training images as they were checked and re-encoded, the
    # archive the trainer gets:
    images = models.FileField(upload_to=training_upload_to, max_length=300, blank=True)
    image_count = models.PositiveIntegerField(default=0)
    trigger_word = models.CharField(max_length=100, blank=True, default="")
    new_version = models.ForeignKey(Version, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Base against fine-tune, one per prompt with the trigger word and the same
    # seed, started when it succeeds (app.services.trainings.compare).
    comparisons = models.ManyToManyField(Comparison, blank=True, related_name="+")

    objects = TrainingQuerySet.as_manager()

    class Meta(Run.Meta):
        indexes = [models.Index(fields=["owner", "-created_at"], name="training_owner_created")]

    @property
    def loss(self):
        """The loss of the last "step k/N loss=x" line, or None."""
        return logs.last_loss(self.logs)

    def get_absolute_url(self):
        return reverse("training", args=[self.id])


class PredictionReview(Prediction):
    """The review queue of predictions with open reports (the admin)."""

    class Meta:
        proxy = True
        verbose_name = "reported prediction"
        verbose_name_plural = "review queue: predictions"


class ComparisonReview(Comparison):
    """The review queue of comparisons with open reports (the admin)."""

    class Meta:
        proxy = True
        verbose_name = "reported comparison"
        verbose_name_plural = "review queue: comparisons"


# --- Reproducibility: bundles imported, re-runs on newer versions, checks (app.services.bundles) -----


class Verdict(models.TextChoices):
    """How a new image compares with the one it should reproduce (app.core.bundles)."""

    PENDING = "pending", "Running"
    IDENTICAL = "identical", "Identical"
    CLOSE = "close", "Close"
    DIFFERENT = "different", "Different"
    FAILED = "failed", "Did not run"


class Reproduction(models.Model):
    """New runs beside the images they should reproduce: a bundle imported,
    or a comparison re-run on its models' latest versions. Each image is a
    ReproductionItem; its page shows each one's verdict."""

    class Kind(models.TextChoices):
        IMPORT = "import", "Bundle imported"
        LATEST = "latest", "Re-run on the latest versions"

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reproductions")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    title = models.CharField(max_length=300, blank=True, default="")
    # What was reproduced: the bundle's kind, id, site, Lightbox version, run description.
    source = models.JSONField(default=dict, blank=True)
    # How each version named was mapped here: [{"model", "version", "picked", "how"}]
    mapping = models.JSONField(default=list, blank=True)
    # What could not run, and why: [{"what", "why"}]
    skipped = models.JSONField(default=list, blank=True)
    # The comparison (or grid, benchmark run) the re-runs made, when one was made.
    comparison = models.ForeignKey(Comparison, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    grid = models.ForeignKey(Grid, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    benchmark = models.ForeignKey(BenchmarkRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.title or self.id

    def get_absolute_url(self):
        return reverse("reproduction", args=[self.id])


def expected_upload_to(instance, filename):
    return f"bundles/{instance.reproduction_id[:2]}/{instance.reproduction_id}/{filename}"


class ReproductionItem(models.Model):
    """One image to reproduce: what it should be (the bundle's PNG, or the old
    run's output), the new prediction that tries, and the verdict once it ended."""

    reproduction = models.ForeignKey(Reproduction, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()
    label = models.CharField(max_length=300, blank=True, default="")
    # The prediction the image came from, by its id where it was made.
    source_prediction = models.CharField(max_length=100, blank=True, default="")
    expected_file = models.FileField(upload_to=expected_upload_to, max_length=300, blank=True)
    expected_output = models.ForeignKey(Output, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    expected_pixels = models.CharField(max_length=64)
    prediction = models.ForeignKey(Prediction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    index = models.PositiveSmallIntegerField(default=0)
    verdict = models.CharField(max_length=10, choices=Verdict.choices, default=Verdict.PENDING)
    distance = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["reproduction", "position"]

    def __str__(self):
        return f"{self.reproduction_id}/{self.position}"


class ReproCheckQuerySet(models.QuerySet):
    def pending(self):
        return self.filter(verdict=Verdict.PENDING)


class ReproCheck(models.Model):
    """A prediction run again with its stored input: did the new image match?"""

    prediction = models.ForeignKey(Prediction, on_delete=models.CASCADE, related_name="repro_checks")
    rerun = models.ForeignKey(Prediction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    verdict = models.CharField(max_length=10, choices=Verdict.choices, default=Verdict.PENDING)
    # Mean absolute pixel difference, 0 to 1 (app.core.bundles.distance).
    distance = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    checked_at = models.DateTimeField(null=True, blank=True)

    objects = ReproCheckQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["prediction", "-created_at"], name="repro_check_prediction")]

    def __str__(self):
        return f"{self.prediction_id}: {self.verdict}"


# --- Arena: blind votes between two versions' images, and the leaderboard ----------


class ArenaVoteQuerySet(models.QuerySet):
    def counted(self):
        """The votes the leaderboard counts: not excluded by a moderator, on
        comparisons and predictions nobody hid since."""
        return self.visible_pairs().filter(excluded=False)

    def visible_pairs(self):
        """Votes on comparisons and images nobody hid or blocked since."""
        return (
            self.filter(
                comparison__hidden_at__isnull=True,
                output_a__prediction__hidden_at__isnull=True,
                output_b__prediction__hidden_at__isnull=True,
            )
            .exclude(output_a__rating="blocked")
            .exclude(output_b__rating="blocked")
        )

    def by(self, voter_key):
        return self.filter(voter_key=voter_key)

    def in_arena(self, arena):
        """All votes (arena ""), or those on one benchmark run's comparisons."""
        return self.filter(comparison__benchmark_id=arena) if arena else self

    def since(self, moment):
        return self.filter(created_at__gte=moment)


class ArenaVote(models.Model):
    """One person's verdict on two images of one comparison made by two
    versions. The pair is stored in a fixed order (output_a's id below
    output_b's), so that a person votes once on a pair whichever side each
    image was shown on; `left` says which one was shown on the left."""

    class Outcome(models.TextChoices):
        A = "a", "A is better"
        B = "b", "B is better"
        TIE = "tie", "Tie"
        BOTH_BAD = "bad", "Both bad"

    id = models.CharField(primary_key=True, max_length=32, default=new_id, editable=False)
    # "u<user id>", or "s<hash>" for a visitor without an account (when allowed).
    voter_key = models.CharField(max_length=64)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="arena_votes"
    )
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="arena_votes")
    output_a = models.ForeignKey(Output, on_delete=models.CASCADE, related_name="+")
    output_b = models.ForeignKey(Output, on_delete=models.CASCADE, related_name="+")
    version_a = models.ForeignKey(Version, on_delete=models.CASCADE, related_name="+")
    version_b = models.ForeignKey(Version, on_delete=models.CASCADE, related_name="+")
    left = models.CharField(max_length=1, choices=[("a", "A"), ("b", "B")])
    outcome = models.CharField(max_length=3, choices=Outcome.choices)
    created_at = models.DateTimeField(default=timezone.now)
    excluded = models.BooleanField(default=False)

    objects = ArenaVoteQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["voter_key", "output_a", "output_b"], name="arena_vote_once_per_pair"),
            models.CheckConstraint(condition=models.Q(output_a__lt=models.F("output_b")), name="arena_vote_pair_order"),
        ]
        indexes = [models.Index(fields=["voter_key", "created_at"], name="arena_vote_voter_created")]

    def __str__(self):
        return f"{self.voter_key}: {self.version_a_id} vs {self.version_b_id}: {self.outcome}"

    @property
    def choice(self):
        """What the voter pressed: left, right, tie or bad."""
        if self.outcome in (self.Outcome.TIE, self.Outcome.BOTH_BAD):
            return self.outcome
        return "left" if self.outcome == self.left else "right"


class Leaderboard(models.Model):
    """A fitted leaderboard, computed by tasks.arena (never in a request) and
    read by /leaderboard: one per arena ("" every comparison, else a benchmark
    run's id), prompt category ("" all) and voter ("" everyone's votes, else a
    voter_key: a personal leaderboard). `changed_at` later than `computed_at`:
    votes changed since, and a recompute is queued."""

    arena = models.CharField(max_length=32, blank=True, default="")
    category = models.CharField(max_length=100, blank=True, default="")
    voter_key = models.CharField(max_length=64, blank=True, default="")
    data = models.JSONField(default=dict)
    computed_at = models.DateTimeField(null=True, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["arena", "category", "voter_key"], name="leaderboard_scope"),
        ]

    def __str__(self):
        return f"Leaderboard {self.arena or 'all'}/{self.category or 'all'}/{self.voter_key or 'everyone'}"

    @property
    def is_stale(self):
        return self.computed_at is None or self.changed_at > self.computed_at
