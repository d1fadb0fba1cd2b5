"""The admin: the moderation panel, and the catalog and limits for site admins.

Moderation is for members of the "moderators" group (and superusers;
app.core.roles.is_moderator), who also need is_staff to sign in here. Other
staff do not see the moderation models at all, whatever Django permissions
they hold. Moderators act through admin actions, one item or many at once;
each action needs or takes a reason (the field beside the action menu) and
writes the audit trail. Nothing is edited through a form, so nothing escapes
the trail.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.admin.helpers import ActionForm
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Count, Exists, Max, OuterRef, Q
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join

from app.core.roles import is_moderator
from app.forms import LoginForm
from app.models import (
    ApiToken,
    ArenaVote,
    Ban,
    BlockedTerm,
    Collection,
    Comparison,
    ComparisonReview,
    Deployment,
    GroupLimits,
    Instance,
    Invite,
    Model,
    ModerationAction,
    Output,
    Prediction,
    PredictionReview,
    ReconcilerState,
    Report,
    Training,
    Version,
)
from app.services import arena, collections, moderation

admin.site.site_header = "Lightbox administration"
admin.site.index_title = "Site administration (moderators: the review queue is at /moderation)"
OPEN = Q(reports__state=Report.State.OPEN)


class AdminLoginForm(LoginForm, AdminAuthenticationForm):
    """The admin's log-in form, throttled with the same counts as the site's
    (app.forms.LoginForm): another door must not mean more attempts."""


admin.site.login_form = AdminLoginForm


class ReasonActionForm(ActionForm):
    reason = forms.CharField(
        required=False,
        max_length=500,
        label="Reason",
        widget=forms.TextInput(attrs={"size": 40, "placeholder": "Why (kept in the audit trail)"}),
    )


class ModeratorOnly:
    """Visible and usable only by moderators; no adding or deleting here."""

    def has_module_permission(self, request):
        return is_moderator(request.user)

    def has_view_permission(self, request, obj=None):
        return is_moderator(request.user)

    def has_change_permission(self, request, obj=None):
        return is_moderator(request.user)

    def has_moderate_permission(self, request):
        return is_moderator(request.user)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _reason(request):
    return (request.POST.get("reason") or "").strip()


def _act(modeladmin, request, queryset, action, verb, needs_reason=False):
    reason = _reason(request)
    if needs_reason and not reason:
        modeladmin.message_user(request, f"Give a reason to {verb}: it goes into the audit trail.", messages.ERROR)
        return
    done = 0
    for item in queryset:
        action(item, request.user, reason)
        done += 1
    modeladmin.message_user(request, f"{verb.capitalize()}: {done} item(s).", messages.SUCCESS)


@admin.action(description="Approve: dismiss the reports and show again", permissions=["moderate"])
def approve(modeladmin, request, queryset):
    _act(modeladmin, request, queryset, moderation.approve, "approve")


@admin.action(description="Hide (gone from the gallery, links answer 410)", permissions=["moderate"])
def hide(modeladmin, request, queryset):
    _act(modeladmin, request, queryset, moderation.hide, "hide", needs_reason=True)


@admin.action(description="Mark NSFW (blurred in listings)", permissions=["moderate"])
def mark_nsfw(modeladmin, request, queryset):
    _act(modeladmin, request, queryset, moderation.mark_nsfw, "mark NSFW")


@admin.action(description="Delete outputs (image files removed for good; asks first)", permissions=["moderate"])
def delete_outputs(modeladmin, request, queryset):
    if _reason(request) and request.POST.get("confirmed") != "yes":
        # Irreversible: a page that asks again, as Django's own "delete selected" does.
        context = {
            **modeladmin.admin_site.each_context(request),
            "title": "Delete these images for good?",
            "items": queryset,
            "reason": _reason(request),
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "opts": modeladmin.model._meta,
        }
        return TemplateResponse(request, "admin/app/confirm_delete_outputs.html", context)
    _act(modeladmin, request, queryset, moderation.delete_outputs, "delete outputs", needs_reason=True)


@admin.action(description="Ban the owner (runs refused, items hidden)", permissions=["moderate"])
def ban_owner(modeladmin, request, queryset):
    reason = _reason(request)
    if not reason:
        modeladmin.message_user(request, "Give a reason to ban: it goes into the audit trail.", messages.ERROR)
        return
    owners = get_user_model().objects.filter(pk__in=queryset.exclude(owner=None).values("owner"))
    for owner in owners:
        if is_moderator(owner):
            modeladmin.message_user(request, f"{owner} is a moderator and was not banned.", messages.WARNING)
            continue
        moderation.ban(owner, request.user, reason)
    modeladmin.message_user(request, f"Banned: {', '.join(map(str, owners)) or 'nobody (anonymous items)'}.")


MODERATION_ACTIONS = [approve, hide, mark_nsfw, delete_outputs, ban_owner]


def _review_queue(model_admin, request):
    """Items with open reports, most reported first, then the most recently reported."""
    return (
        model_admin.model._default_manager.annotate(
            open_reports=Count("reports", filter=OPEN, distinct=True),
            last_reported=Max("reports__created_at", filter=OPEN),
        )
        .filter(open_reports__gt=0)
        .order_by("-open_reports", "-last_reported")
    )


def _thumbnails(outputs):
    """Small thumbnails for moderators: nsfw ones blurred, linked to the image."""
    items = []
    for output in outputs:
        if output.rating == Output.Rating.BLOCKED:
            continue
        shown = output.blurred_thumbnail if output.rating == Output.Rating.NSFW else output.thumbnail
        if shown and output.file:
            items.append((output.file.url, shown.url, output.get_rating_display()))
    if not items:
        return "—"
    return format_html_join(" ", '<a href="{}" target="_blank"><img src="{}" alt="{}" height="128"></a>', items)


class StateFilter(admin.SimpleListFilter):
    title = "moderation state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [
            ("reported", "Open reports"),
            ("hidden", "Hidden"),
            ("shown", "Not hidden"),
            ("nsfw", "Has NSFW outputs"),
            ("banned", "Owner banned"),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "reported":
            return queryset.filter(Exists(Report.objects.filter(**{self.target: OuterRef("pk")}, state="open")))
        if value == "hidden":
            return queryset.filter(hidden_at__isnull=False)
        if value == "shown":
            return queryset.filter(hidden_at__isnull=True)
        if value == "nsfw":
            return queryset.filter(Exists(Output.objects.filter(**{self.output_path: OuterRef("pk")}, rating="nsfw")))
        if value == "banned":
            return queryset.filter(owner__ban__isnull=False)
        return queryset


class PredictionStateFilter(StateFilter):
    target, output_path = "prediction", "prediction"


class ComparisonStateFilter(StateFilter):
    target, output_path = "comparison", "prediction__comparison"


def _with_reporter_trust(reports):
    """Each report marked with whether its reporter counts toward hiding the
    item (moderation.trusted_reporters), in the same query."""
    trusted = moderation.trusted_reporters().filter(pk=OuterRef("reporter"))
    return reports.annotate(reporter_trusted=Exists(trusted))


@admin.display(description="Trusted reporter", boolean=True, ordering="reporter_trusted")
def _reporter_trusted(report):
    return report.reporter_trusted


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return is_moderator(request.user)


class ReportInline(ReadOnlyInline):
    model = Report
    fields = readonly_fields = ["created_at", "reason", "text", "reporter", _reporter_trusted, "state", "resolved_by"]

    def get_queryset(self, request):
        return _with_reporter_trust(super().get_queryset(request))


class AuditInline(ReadOnlyInline):
    model = ModerationAction
    fields = readonly_fields = ["created_at", "kind", "moderator", "reason"]


@admin.register(Prediction)
class PredictionAdmin(ModeratorOnly, admin.ModelAdmin):
    """Every prediction, for moderators: filters by model, user and state."""

    list_display = ["id", "thumbnails", "prompt", "owner", "model", "visibility", "status", "hidden", "created_at"]
    list_filter = [
        PredictionStateFilter,
        ("version__model", admin.RelatedOnlyFieldListFilter),
        ("owner", admin.RelatedOnlyFieldListFilter),
        "visibility",
        "status",
        "error_code",
        "source",
    ]
    search_fields = ["id", "owner__username", "input__prompt"]
    list_select_related = ["version__model", "owner"]
    actions = MODERATION_ACTIONS
    action_form = ReasonActionForm
    inlines = [ReportInline, AuditInline]
    fields = readonly_fields = [
        "id",
        "thumbnails",
        "owner",
        "version",
        "comparison",
        "input",
        "status",
        "error",
        "error_code",
        "output_reruns",
        "visibility",
        "source",
        "hidden_at",
        "hidden_reason",
        "cost",
        "created_at",
        "completed_at",
    ]
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("outputs")

    @admin.display(description="Images")
    def thumbnails(self, obj):
        return _thumbnails(obj.outputs.all())

    @admin.display(description="Prompt")
    def prompt(self, obj):
        text = str(obj.input.get("prompt", ""))
        return text[:80] + ("…" if len(text) > 80 else "")

    @admin.display(description="Model", ordering="version__model")
    def model(self, obj):
        return obj.version.model

    @admin.display(description="Hidden", boolean=True, ordering="hidden_at")
    def hidden(self, obj):
        return obj.is_hidden


class ReviewQueue:
    """The review queue of a moderated model: items with open reports, most
    reported and then most recently reported first."""

    def get_queryset(self, request):
        return _review_queue(self, request)

    def get_ordering(self, request):
        return ["-open_reports", "-last_reported"]

    def changelist_view(self, request, extra_context=None):
        # Not Django's "Select reported prediction to change".
        title = f"Review queue: reported {self.model._meta.verbose_name_plural.split(': ')[-1]}, most reported first"
        return super().changelist_view(request, {"title": title, **(extra_context or {})})

    @admin.display(description="Open reports", ordering="open_reports")
    def open_reports(self, obj):
        return obj.open_reports

    @admin.display(description="Reasons")
    def reasons(self, obj):
        reports = obj.reports.filter(state=Report.State.OPEN)
        return "; ".join(f"{r.get_reason_display()}{': ' + r.text[:60] if r.text else ''}" for r in reports[:5])

    @admin.display(description="Last reported", ordering="last_reported")
    def last_reported(self, obj):
        return obj.last_reported


@admin.register(PredictionReview)
class PredictionReviewAdmin(ReviewQueue, PredictionAdmin):
    """The review queue: predictions with open reports, most reported and newest first."""

    list_select_related = False

    # Few columns, so that the images and reasons fit at 1280 px.
    list_display = ["thumbnails", "prompt", "open_reports", "reasons", "owner", "model", "hidden"]
    list_filter = [
        ("version__model", admin.RelatedOnlyFieldListFilter),
        ("owner", admin.RelatedOnlyFieldListFilter),
        "visibility",
    ]
    date_hierarchy = None


@admin.register(Comparison)
class ComparisonAdmin(ModeratorOnly, admin.ModelAdmin):
    list_display = ["id", "thumbnails", "prompt", "owner", "visibility", "hidden", "created_at"]
    list_filter = [
        ComparisonStateFilter,
        ("predictions__version__model", admin.RelatedOnlyFieldListFilter),
        ("owner", admin.RelatedOnlyFieldListFilter),
        "visibility",
    ]
    search_fields = ["id", "owner__username", "input__prompt"]
    list_select_related = ["owner"]
    actions = MODERATION_ACTIONS
    action_form = ReasonActionForm
    inlines = [ReportInline, AuditInline]
    fields = readonly_fields = [
        "id",
        "thumbnails",
        "owner",
        "input",
        "visibility",
        "hidden_at",
        "hidden_reason",
        "created_at",
    ]

    @admin.display(description="Images")
    def thumbnails(self, obj):
        return _thumbnails(
            Output.objects.filter(prediction__comparison=obj).order_by("prediction__created_at", "index")[:8]
        )

    @admin.display(description="Prompt")
    def prompt(self, obj):
        return str(obj.input.get("prompt", ""))[:80]

    @admin.display(description="Hidden", boolean=True, ordering="hidden_at")
    def hidden(self, obj):
        return obj.is_hidden


@admin.register(ComparisonReview)
class ComparisonReviewAdmin(ReviewQueue, ComparisonAdmin):
    list_display = ["thumbnails", "prompt", "open_reports", "reasons", "owner", "hidden"]


@admin.register(Report)
class ReportAdmin(ModeratorOnly, admin.ModelAdmin):
    list_display = [
        "created_at",
        "reason",
        "text",
        "target_link",
        "reporter",
        _reporter_trusted,
        "state",
        "resolved_by",
    ]
    list_filter = ["state", "reason"]
    search_fields = ["prediction__id", "comparison__id", "reporter__username", "text"]
    list_select_related = ["reporter", "resolved_by"]
    fields = readonly_fields = [
        "created_at",
        "reason",
        "text",
        "prediction",
        "comparison",
        "reporter",
        _reporter_trusted,
        "state",
        "resolved_at",
        "resolved_by",
    ]

    def get_queryset(self, request):
        return _with_reporter_trust(super().get_queryset(request))

    @admin.display(description="Item")
    def target_link(self, obj):
        if obj.prediction_id:
            return format_html(
                '<a href="../prediction/{}/change/">prediction {}</a>', obj.prediction_id, obj.prediction_id
            )
        return format_html('<a href="../comparison/{}/change/">comparison {}</a>', obj.comparison_id, obj.comparison_id)


@admin.register(ModerationAction)
class ModerationActionAdmin(ModeratorOnly, admin.ModelAdmin):
    """The audit trail: read only, for everyone who may see it."""

    list_display = ["created_at", "kind", "target", "moderator_name", "reason"]
    list_filter = ["kind", ("moderator", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["target", "reason", "moderator__username"]
    fields = readonly_fields = [
        "created_at",
        "kind",
        "target",
        "moderator",
        "user",
        "prediction",
        "comparison",
        "reason",
    ]

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Moderator", ordering="moderator")
    def moderator_name(self, obj):
        return obj.moderator or "(reports threshold)"


@admin.register(Ban)
class BanAdmin(ModeratorOnly, admin.ModelAdmin):
    list_display = ["user", "reason", "created_at", "created_by"]
    search_fields = ["user__username", "reason"]
    fields = readonly_fields = ["user", "reason", "created_at", "created_by"]
    actions = ["lift"]
    action_form = ReasonActionForm

    @admin.action(description="Lift the ban", permissions=["moderate"])
    def lift(self, request, queryset):
        for ban in queryset.select_related("user"):
            moderation.unban(ban.user, request.user, _reason(request))
        self.message_user(request, "Ban(s) lifted.")


@admin.register(BlockedTerm)
class BlockedTermAdmin(ModeratorOnly, admin.ModelAdmin):
    """The prompt blocklist: whole words or phrases, any case."""

    list_display = ["term", "note", "created_at"]
    search_fields = ["term", "note"]
    fields = ["term", "note"]

    def has_add_permission(self, request):
        return is_moderator(request.user)

    def has_delete_permission(self, request, obj=None):
        return is_moderator(request.user)


# --- Users: moderators may ban from the user list too -------------------------------

User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class LightboxUserAdmin(UserAdmin):
    actions = ["ban_users"]
    action_form = ReasonActionForm
    list_display = [*UserAdmin.list_display, "banned"]

    def has_moderate_permission(self, request):
        return is_moderator(request.user)

    @admin.display(description="Banned", boolean=True)
    def banned(self, obj):
        return hasattr(obj, "ban")

    @admin.action(description="Ban (runs refused, items hidden)", permissions=["moderate"])
    def ban_users(self, request, queryset):
        reason = _reason(request)
        if not reason:
            self.message_user(request, "Give a reason to ban: it goes into the audit trail.", messages.ERROR)
            return
        for user in queryset:
            if is_moderator(user):
                self.message_user(request, f"{user} is a moderator and was not banned.", messages.WARNING)
                continue
            moderation.ban(user, request.user, reason)
        self.message_user(request, "Banned.")


# --- Catalog, limits, tokens: site admins (Django permissions) -----------------------


class VersionInline(admin.TabularInline):
    model = Version
    extra = 0
    fields = ["id", "backend", "location", "available", "price_per_second", "timeout", "created_at"]
    readonly_fields = ["id", "backend", "location", "available", "created_at"]


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin):
    list_display = ["__str__", "visibility", "user", "description", "created_at"]
    list_filter = ["visibility", "collections"]
    search_fields = ["owner", "name"]
    raw_id_fields = ["user"]
    # The collections a model is in: /v1/collections lists one per collection here.
    filter_horizontal = ["collections"]
    inlines = [VersionInline]


class InstanceInline(admin.TabularInline):
    """The version's pool: Cog servers an admin registers (their URLs); the
    health the beat last found is read-only. Start each server with the
    upload URL of the version (shown on the version) so its outputs upload."""

    model = Instance
    extra = 0
    fields = ["url", "up", "down_reason", "busy_with", "checked_at"]
    readonly_fields = ["up", "down_reason", "busy_with", "checked_at"]

    @admin.display(description="busy with")
    def busy_with(self, instance):
        return instance.prediction_id or "—"


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    """Every pool's instances, the down ones first (what /healthz reports)."""

    list_display = ["url", "version", "up", "down_reason", "prediction_id", "checked_at"]
    list_filter = ["up"]
    search_fields = ["url"]
    fields = ["version", "url"]
    ordering = ["up", "version", "pk"]


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ["__str__", "version", "hardware", "min_instances", "max_instances", "release", "pool"]
    search_fields = ["name", "owner__username"]
    readonly_fields = ["release", "released_at", "released_by", "created_at", "pool"]
    raw_id_fields = ["owner", "version"]

    @admin.display(description="pool (up / instances)")
    def pool(self, deployment):
        instances = list(deployment.version.instances.all())
        if not instances:
            return f"its version's server ({deployment.version.location})"
        up = sum(instance.up for instance in instances)
        short = " — fewer than min_instances" if up < deployment.min_instances else ""
        return f"{up} / {len(instances)} up{short}"


class CollectionForm(forms.ModelForm):
    class Meta:
        model = Collection
        fields = ["slug", "name", "description", "full_description"]

    def clean_slug(self):
        slug = self.cleaned_data["slug"]
        if slug in collections.BUILT_IN:
            raise forms.ValidationError(f"{slug} is a collection Lightbox makes itself; choose another slug.")
        return slug


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    """Collections staff curate; add models to one from each model's page."""

    form = CollectionForm
    list_display = ["slug", "name", "description"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Version)
class VersionAdmin(admin.ModelAdmin):
    inlines = [InstanceInline]
    list_display = ["__str__", "backend", "location", "available", "price_per_second", "created_at"]
    list_filter = ["backend", "available"]
    fields = [
        "id",
        "model",
        "backend",
        "location",
        "available",
        "unavailable_reason",
        "price_per_second",
        "timeout",
        "cog_version",
        "created_at",
        # Fine-tuning (trainapi): where it trains; what a fine-tune was trained from.
        "trainer_location",
        "base",
        "trigger_word",
    ]
    readonly_fields = [
        "base",
        "id",
        "model",
        "backend",
        "location",
        "available",
        "unavailable_reason",
        "cog_version",
        "created_at",
    ]


@admin.register(ReconcilerState)
class ReconcilerStateAdmin(admin.ModelAdmin):
    """Whether beat keeps running the reconciler, as /healthz reports it, and
    who ran it last (a worker stands in while beat is late). Read-only."""

    list_display = fields = readonly_fields = ["beat", "beat_at", "finished_at", "finished_by", "holder", "lease_until"]

    @admin.display(description="beat")
    def beat(self, state):
        return state.beat_problem() or "ok"

    def changelist_view(self, request, extra_context=None):
        ReconcilerState.current()  # the one row, before beat first wrote it
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(GroupLimits)
class GroupLimitsAdmin(admin.ModelAdmin):
    list_display = ["group", "predictions_per_minute", "predictions_per_day", "concurrent_predictions", "monthly_spend"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "revoked_at"]
    search_fields = ["user__username", "prefix", "name"]
    fields = readonly_fields = ["prefix", "user", "name", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke", permissions=["change"])
    def revoke(self, request, queryset):
        for token in queryset.filter(revoked_at__isnull=True):
            token.revoke()


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    """Invite codes for LIGHTBOX_SIGNUP=invite: staff add one (a note and an
    optional expiry) and send its sign-up link. Deleting an unused one revokes it."""

    list_display = [
        "code",
        "state",
        "note",
        "signup_link",
        "created_by",
        "created_at",
        "expires_at",
        "used_by",
        "used_at",
    ]
    list_select_related = ["created_by", "used_by"]
    search_fields = ["code", "note", "used_by__username"]
    fields = ["signup_link", "note", "expires_at", "created_by", "created_at", "used_by", "used_at"]
    readonly_fields = ["signup_link", "created_by", "created_at", "used_by", "used_at"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(request, format_html("Send this sign-up link: {}", obj.signup_url), messages.SUCCESS)
        return super().response_add(request, obj, post_url_continue)

    @admin.display(description="Sign-up link")
    def signup_link(self, obj):
        if obj is None or obj.pk is None:
            return "Shown once the invite is saved."
        return format_html('<a href="{0}">{0}</a>', obj.signup_url)

    @admin.display(description="State")
    def state(self, obj):
        if obj.used_at:
            return "used"
        return "expired" if obj.is_expired else "open"


# --- Arena votes (issue 15): moderators remove votes, always with an audit entry ----------


@admin.register(ArenaVote)
class ArenaVoteAdmin(ModeratorOnly, admin.ModelAdmin):
    list_display = ["created_at", "voter_key", "user", "version_a", "version_b", "outcome", "left", "excluded"]
    list_filter = ["outcome", "excluded"]
    search_fields = ["voter_key", "user__username", "comparison__id"]
    fields = readonly_fields = list_display + ["comparison", "output_a", "output_b"]
    actions = ["remove_votes", "exclude_votes"]
    action_form = ReasonActionForm

    @admin.action(
        description="Remove the selected votes (audited; the leaderboards are fitted again)", permissions=["moderate"]
    )
    def remove_votes(self, request, queryset):
        if not _reason(request):
            self.message_user(request, "Give a reason to remove votes: it goes into the audit trail.", messages.ERROR)
            return
        count = arena.remove_votes(queryset, request.user, _reason(request))
        self.message_user(request, f"Removed {count} vote(s).", messages.SUCCESS)

    @admin.action(description="Exclude every vote of the selected votes' voters (audited)", permissions=["moderate"])
    def exclude_votes(self, request, queryset):
        if not _reason(request):
            self.message_user(request, "Give a reason to exclude votes: it goes into the audit trail.", messages.ERROR)
            return
        voters = set(queryset.values_list("voter_key", flat=True))
        count = sum(arena.set_excluded(voter, True, request.user, _reason(request)) for voter in voters)
        self.message_user(request, f"Excluded {count} vote(s) of {len(voters)} voter(s).", messages.SUCCESS)


# --- Fine-tuning (trainapi) ---------------------------------------------------------


@admin.register(Training)
class TrainingAdmin(admin.ModelAdmin):
    """Trainings, to look at (their state changes only through the engine)."""

    list_display = ["id", "owner", "version", "destination", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["id", "owner__username", "destination__name"]
    list_select_related = ["owner", "version__model", "destination"]

    def get_readonly_fields(self, request, obj=None):
        # What it is first (the fields Run shares would come first otherwise).
        first = ["id", "owner", "version", "destination", "status"]
        return first + [f.name for f in Training._meta.fields if f.name not in first] + ["comparisons"]

    def has_add_permission(self, request):
        return False
