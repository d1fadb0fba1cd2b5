"""Forms. They only validate; views save.

The playground form is built from the chosen versions' input schemas: the
common fields once (app.services.comparisons.COMMON_FIELDS), each version's own fields
under "advanced". A shared field refuses a value no chosen version takes (outside the
union of their ranges); the comparison mapping fits a value that only some
take to each version.
"""

from urllib.parse import parse_qs, urlsplit

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import (
    AuthenticationForm,
    PasswordChangeForm,
    PasswordResetForm,
    SetPasswordForm,
    UserCreationForm,
)
from django.core.validators import MaxValueValidator, MinValueValidator

from app.core import payloads, pngmeta, schema, throttle, uploads
from app.models import Invite, Prompt, Report, Visibility
from app.services import prompt_sets, trainings
from app.services.comparisons import COMMON_FIELDS

TEXTAREA_FIELDS = ("prompt", "negative_prompt")


def _label(name, spec):
    """The schema's title ("Num Inference Steps"), else the name made readable.
    A choice field's title is its enum's name, so that one is not used."""
    title = spec.get("title", "")
    if not title or title == name or "enum" in spec:
        return name.replace("_", " ").capitalize()
    return title


def _description(version, name):
    """The property's own description: field_specs folds in a choice field's
    enum schema, whose description is pydantic's "An enumeration."."""
    description = schema.properties(version).get(name, {}).get("description", "")
    return "" if description == "An enumeration." else description


def _field_for(name, spec, required=False, help_text=""):
    """A form field for one property schema, with its range (min, max and step
    on number inputs, so the browser helps too)."""
    kind = spec.get("type")
    label = _label(name, spec)
    if spec.get("format") == "uri":
        return forms.FileField(
            label=label,
            required=False,
            help_text=help_text,
            widget=forms.ClearableFileInput(attrs={"accept": "image/*"}),
        )
    if "enum" in spec and kind in (None, "string"):
        choices = [("", "Model default")] + [(value, value) for value in spec["enum"]]
        return forms.ChoiceField(label=label, required=required, choices=choices, help_text=help_text)
    if kind in ("integer", "number"):
        attrs = {"inputmode": "numeric" if kind == "integer" else "decimal", "step": 1 if kind == "integer" else "any"}
        attrs.update({bound: spec[key] for bound, key in (("min", "minimum"), ("max", "maximum")) if key in spec})
        if spec.get("default") not in (None, ""):
            attrs["placeholder"] = f"default {_number(spec['default'])}"
        field_class = forms.IntegerField if kind == "integer" else forms.FloatField
        return field_class(label=label, required=required, help_text=help_text, widget=forms.NumberInput(attrs=attrs))
    if kind == "boolean":
        choices = [("", "Model default"), ("true", "Yes"), ("false", "No")]
        return forms.TypedChoiceField(
            label=label,
            required=False,
            choices=choices,
            help_text=help_text,
            coerce=lambda value: value == "true",
            empty_value=None,
        )
    widget = forms.Textarea(attrs={"rows": 3}) if name in TEXTAREA_FIELDS else forms.TextInput()
    max_length = spec.get("maxLength")
    if not isinstance(max_length, int) or max_length > settings.MAX_TEXT_LENGTH:
        max_length = settings.MAX_TEXT_LENGTH
    return forms.CharField(
        label=label, required=required, help_text=help_text, widget=widget, strip=True, max_length=max_length
    )


def _merged_spec(name, versions):
    """One spec for a field several versions share: the first version's, with
    every version's choices, and the union of their ranges (a bound only where
    every version has one): a value outside it no chosen version takes."""
    specs = [schema.field_specs(version)[name] for version in versions if name in schema.field_specs(version)]
    merged = dict(specs[0])
    if any(spec.get("type") == "number" for spec in specs):
        merged["type"] = "number"
    enums = [value for spec in specs for value in spec.get("enum", [])]
    if enums and all("enum" in spec for spec in specs):
        merged["enum"] = list(dict.fromkeys(enums))
    else:
        merged.pop("enum", None)
    for key, pick in (("minimum", min), ("maximum", max)):
        bounds = [spec.get(key) for spec in specs]
        if all(isinstance(bound, (int, float)) for bound in bounds):
            merged[key] = pick(bounds)
        else:
            merged.pop(key, None)
    defaults = {spec.get("default") for spec in specs if spec.get("default") not in (None, "")}
    if len(defaults) != 1:
        merged.pop("default", None)
    return merged


def _number(value):
    """A value as the form shows it: 7.5, 0 (not 0.0), Yes/No for booleans."""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _range_text(spec):
    if "minimum" in spec and "maximum" in spec:
        return f"{_number(spec['minimum'])} to {_number(spec['maximum'])}"
    if "minimum" in spec:
        return f"at least {_number(spec['minimum'])}"
    if "maximum" in spec:
        return f"at most {_number(spec['maximum'])}"
    return ""


def _per_version(name, versions, describe):
    """One phrase for what `describe(spec)` says of every version: once when
    they agree, else grouped by value ("512 for sd-turbo; 64 for tiny-sd")."""
    groups = {}
    for version in versions:
        spec = schema.field_specs(version).get(name)
        if spec is not None:
            groups.setdefault(describe(spec), []).append(version.model.name)
    groups.pop("", None)
    if len(groups) <= 1:
        return next(iter(groups), "")
    return "; ".join(f"{text} for {', '.join(names)}" for text, names in groups.items())


def shared_help(name, versions, required=False):
    """The help of a field several versions share, said once: the default (none
    for a required field) and the range, per model only where they differ, and
    which models do not use it."""
    parts = []
    if not required:
        default = _per_version(
            name, versions, lambda spec: "" if spec.get("default") in (None, "") else _number(spec["default"])
        )
        if default:
            parts.append(f"Default {default}.")
    allowed = _per_version(name, versions, _range_text)
    if allowed:
        parts.append(f"From {allowed}." if " to " in allowed.split(";")[0] else f"{allowed.capitalize()}.")
    lacking = [version.model.name for version in versions if name not in schema.field_specs(version)]
    if lacking:
        parts.append(f"Not used by {', '.join(lacking)}.")
    return " ".join(parts)


def advanced_name(version, field):
    return f"{version.id[:12]}-{field}"


def shared_names(versions):
    """The fields shown once for every chosen version: the common ones, and
    any other field more than one of them has (a LoRA, a control image)."""
    counts = {}
    for version in versions:
        for name in schema.field_specs(version):
            counts[name] = counts.get(name, 0) + 1
    common = [name for name in COMMON_FIELDS if name in counts]
    return common + [name for name, count in counts.items() if name not in COMMON_FIELDS and count > 1]


# A seed of -1 means "random", as in AUTOMATIC1111.
RANDOM_SEED = -1


class PlaygroundForm(forms.Form):
    publish = forms.BooleanField(
        label="Publish to the gallery",
        required=False,
        help_text="Otherwise the comparison is unlisted: only people with its link can see it.",
    )
    mask_painted = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, versions, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.is_bound:
            # clean() keeps accepted images here, for the page that comes back.
            self.data = self.data.copy()
        self.versions = list(versions)
        self.common_names, self.file_names = [], []
        for name in shared_names(self.versions):
            having = [version for version in self.versions if name in schema.field_specs(version)]
            spec = _merged_spec(name, having)
            required = name == "prompt"
            help_text = " ".join(
                filter(None, [_description(having[0], name), shared_help(name, self.versions, required)])
            )
            self.fields[name] = _field_for(name, spec, required=required, help_text=help_text)
            if name == "seed":
                self.fields[name].widget.attrs.update(min=RANDOM_SEED, placeholder="random")
                self.fields[name].help_text = "Empty or -1: a random seed. Every model gets the same one."
            if schema.is_file_input(spec):
                self.file_names.append(name)
                self.fields[f"{name}_kept"] = forms.CharField(required=False, widget=forms.HiddenInput)
                self.fields[f"{name}_remove"] = forms.BooleanField(label="Remove it", required=False)
            self.common_names.append(name)
        self.specs = {name: _merged_spec(name, self.versions_having(name)) for name in self.common_names}
        # A fine-tune's trigger word, as the prompt's hint (fine-tuning: trainapi).
        triggers = [(version, version.trigger_word) for version in self.versions if version.trigger_word]
        if triggers and "prompt" in self.fields:
            self.fields["prompt"].widget.attrs["placeholder"] = trainings.prompt_hint(triggers[0][0])
            self.fields["prompt"].help_text = " ".join(
                filter(
                    None,
                    [self.fields["prompt"].help_text]
                    + [
                        f"{version.model} was fine-tuned on “{word}”: put it in the prompt."
                        for version, word in triggers
                    ],
                )
            )
        self.advanced = []
        for version in self.versions:
            names = []
            for name, spec in schema.field_specs(version).items():
                if name in self.common_names:
                    continue
                help_text = " ".join(filter(None, [_description(version, name), shared_help(name, [version])]))
                field = _field_for(name, spec, help_text=help_text)
                if isinstance(field, (forms.IntegerField, forms.FloatField)):
                    for key, check, word in (
                        ("minimum", MinValueValidator, "at least"),
                        ("maximum", MaxValueValidator, "at most"),
                    ):
                        if isinstance(spec.get(key), (int, float)):
                            field.validators.append(check(spec[key], message=f"Must be {word} {_number(spec[key])}."))
                self.fields[advanced_name(version, name)] = field
                names.append(advanced_name(version, name))
            if names:
                self.advanced.append((version, names))

    def versions_having(self, name):
        return [version for version in self.versions if name in schema.field_specs(version)]

    def common_fields(self):
        return [self[name] for name in self.common_names if name not in self.file_names]

    def file_fields(self):
        """(field, its kept image as a data URI or "", its remove box, its
        hidden kept field) of each image input."""
        return [
            (self[name], self._kept(name), self[f"{name}_remove"], self[f"{name}_kept"]) for name in self.file_names
        ]

    def has_images_or_errors(self):
        """Whether the image section opens: something in it, or an error there."""
        painted = (self.data if self.is_bound else self.initial).get("mask_painted")
        return bool(painted) or any(self._kept(name) or self.errors.get(name) for name in self.file_names)

    def _kept(self, name):
        value = (self.data if self.is_bound else self.initial).get(f"{name}_kept") or ""
        return value if isinstance(value, str) and value.startswith("data:image/") else ""

    def advanced_groups(self):
        return [(version, [self[name] for name in names]) for version, names in self.advanced]

    def error_summary(self):
        """(field id, label, message) of every error, in the page's order, for
        the summary at the top of the form."""
        found = []
        for name, field in self.fields.items():
            for message in self.errors.get(name, []):
                found.append((self[name].id_for_label, field.label or name, message))
        return found

    def _out_of_range(self, name, value):
        """The field error for a value no chosen version takes, with each
        version's own range where they differ; "" when some version takes it."""
        spec = self.specs[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return ""
        if value >= spec.get("minimum", value) and value <= spec.get("maximum", value):
            return ""
        text = (
            f"Must be from {_range_text(spec)}."
            if "minimum" in spec and "maximum" in spec
            else f"Must be {_range_text(spec)}."
        )
        per_version = _per_version(name, self.versions, _range_text)
        if ";" in per_version:
            text += f" ({per_version}.)"
        return text

    def _clean_image(self, name, cleaned):
        """The image to send for a file input: a new upload, else the one kept
        from before (a remix, an output sent here, a form that came back), each
        checked and re-encoded as every upload is."""
        upload = cleaned.get(name)
        kept = "" if cleaned.get(f"{name}_remove") else self._kept(name)
        if upload:
            value = uploads.clean_upload(upload).data_uri
        elif kept:
            try:
                value = uploads.clean_image(payloads.decode_data_uri(kept)[0]).data_uri
            except ValueError as exc:  # UploadRejected too
                raise forms.ValidationError(f"The image kept from before cannot be used: {exc}") from exc
        else:
            value = None
        self.data[f"{name}_kept"] = value or ""
        return value

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("seed") == RANDOM_SEED:
            cleaned["seed"] = None
        for name in self.common_names:
            if name == "seed" and cleaned.get(name) is None:
                continue
            problem = self._out_of_range(name, cleaned.get(name))
            if problem and name not in self.errors:
                self.add_error(name, problem)
        for name in self.file_names:
            if not self.errors.get(name):
                try:
                    cleaned[name] = self._clean_image(name, cleaned)
                except forms.ValidationError as exc:
                    self.add_error(name, exc)
        painted = cleaned.get("mask_painted") or ""
        if "mask" in self.fields and painted.startswith("data:image/png;base64,") and not cleaned.get("mask"):
            cleaned["mask"] = painted
        if cleaned.get("mask") and "image" in self.fields and not cleaned.get("image"):
            self.add_error("mask", "A mask needs an image to paint on: add the image too.")
        return cleaned

    def common_input(self):
        return {name: self.cleaned_data.get(name) for name in self.common_names}

    def extra_input(self):
        return {
            version.id: {name.split("-", 1)[1]: self.cleaned_data.get(name) for name in names}
            for version, names in self.advanced
        }

    def visibility(self):
        return Visibility.PUBLIC if self.cleaned_data.get("publish") else None


# What one may paste: A1111's text with a long prompt, or a Lightbox chunk.
RESTORE_TEXT_MAX = 64 * 1024


class RestoreForm(forms.Form):
    """Settings to put back in the playground: a PNG (Lightbox's, A1111's,
    ComfyUI's) or A1111's "parameters" text. Valid: cleaned_data["found"]
    is what app.core.pngmeta read."""

    png = forms.FileField(
        label="A PNG made by Lightbox, AUTOMATIC1111 or ComfyUI",
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": "image/png"}),
    )
    parameters = forms.CharField(
        label="Or its parameters text",
        required=False,
        max_length=RESTORE_TEXT_MAX,
        strip=True,
        widget=forms.Textarea(
            attrs={
                "rows": 3,
                "placeholder": "a red fox\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512",
            }
        ),
        help_text="As AUTOMATIC1111 shows it under an image (PNG Info).",
    )

    def clean(self):
        cleaned = super().clean()
        png, text = cleaned.get("png"), cleaned.get("parameters")
        if self.errors:
            return cleaned
        try:
            if png:
                if png.size > settings.UPLOAD_IMAGE_MAX_BYTES:
                    limit = settings.UPLOAD_IMAGE_MAX_BYTES // (1024 * 1024)
                    raise pngmeta.NotReadable(f"This file is larger than {limit} MB.")
                cleaned["found"] = pngmeta.read_png(png.read())
            elif text:
                cleaned["found"] = pngmeta.parse_parameters(text)
            else:
                raise pngmeta.NotReadable("Choose a PNG, or paste its parameters text.")
        except pngmeta.NotReadable as exc:
            self.add_error("png" if png or not text else "parameters", str(exc))
        return cleaned


class SignupForm(UserCreationForm):
    """With `needs_invite` (LIGHTBOX_SIGNUP=invite), also an invite code; the
    view claims it in the transaction that saves the user (Invite.claim).
    `retry_after`: the seconds the view's sign-up throttle asked to wait."""

    retry_after = None

    invite = forms.CharField(
        label="Invite code",
        max_length=200,
        help_text="From the invitation you were sent; its link fills it in.",
    )
    email = forms.EmailField(required=True, help_text="For resetting your password.")

    field_order = ["invite", "username", "email", "password1", "password2"]

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def __init__(self, *args, needs_invite=False, **kwargs):
        super().__init__(*args, **kwargs)
        if not needs_invite:
            del self.fields["invite"]

    def validate_password_for_user(self, user, password_field_name="password1"):
        # A weak password is the password field's problem (Django puts it under
        # the confirmation, which only has to match).
        super().validate_password_for_user(user, password_field_name="password1")

    def clean_invite(self):
        code = invite_code(self.cleaned_data["invite"])
        problem = Invite.problem_with(Invite.objects.filter(code=code).first())
        if problem:
            raise forms.ValidationError(problem, code="invalid_invite")
        return code


def invite_code(text):
    """The code in what was typed: the code, or the whole sign-up link pasted."""
    text = text.strip()
    if "invite=" in text:
        text = parse_qs(urlsplit(text).query).get("invite", [text])[0]
    return text.strip()


class LoginForm(AuthenticationForm):
    """Django's log-in form, throttled per username and client address, per
    address, and per username from everywhere (app.core.throttle.login_attempt). Every
    attempt counts until one succeeds, whether the account exists or not, so
    an unknown username gets the same answers as a real one. Once refused,
    `retry_after` says in how many seconds to try again."""

    retry_after = None

    def clean(self):
        username, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if username is None or not password:
            return super().clean()
        username, address = username.strip().lower(), throttle.client_ip(self.request)
        wait = throttle.login_attempt(username, address)
        if wait is not None:
            self.retry_after = wait
            raise forms.ValidationError(
                f"Too many failed log-in attempts. Try again {throttle.wait_text(wait)}.", code="throttled"
            )
        cleaned = super().clean()
        throttle.login_succeeded(username, address)
        return cleaned


class PasswordResetRequestForm(PasswordResetForm):
    """Django's password-reset form, throttled per email address and per
    client address (app.core.throttle), whether or not an account has the address."""

    retry_after = None

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request

    def clean_email(self):
        email = self.cleaned_data["email"]
        wait = throttle.hit_each(
            (throttle.password_reset_by_email(), email.strip().lower()),
            (throttle.password_reset_by_ip(), throttle.client_ip(self.request)),
        )
        if wait is not None:
            self.retry_after = wait
            raise forms.ValidationError(
                f"Too many password reset requests. Try again {throttle.wait_text(wait)}.", code="throttled"
            )
        return email


class NewPasswordForm(SetPasswordForm):
    """Setting a password after a reset: a weak one is told under the new
    password, not under its confirmation (as SignupForm does)."""

    def validate_password_for_user(self, user, password_field_name="new_password1"):
        super().validate_password_for_user(user, password_field_name="new_password1")


class ChangePasswordForm(PasswordChangeForm):
    """Changing one's password, with errors under the field they are about."""

    def validate_password_for_user(self, user, password_field_name="new_password1"):
        super().validate_password_for_user(user, password_field_name="new_password1")


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="What the token is for, e.g. “laptop”.")


class VisibilityForm(forms.Form):
    visibility = forms.ChoiceField(choices=Visibility.choices)


class BulkForm(forms.Form):
    """An action on several of one's own comparisons (the history page)."""

    DELETE = "delete"

    ids = forms.MultipleChoiceField(error_messages={"required": "Tick at least one comparison first."})
    action = forms.ChoiceField(choices=[*Visibility.choices, (DELETE, "Delete")])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Any id is accepted here; the view acts only on the user's own.
        self.fields["ids"].valid_value = lambda value: isinstance(value, str) and 0 < len(value) <= 32


class ReportForm(forms.Form):
    reason = forms.ChoiceField(
        label="What is wrong with it?",
        choices=Report.Reason.choices,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose a reason."},
    )
    text = forms.CharField(
        label="Details",
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Optional, except for “Other”. Moderators read it; the owner does not.",
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("reason") == Report.Reason.OTHER and not cleaned.get("text") and "text" not in self.errors:
            self.add_error("text", "Say what is wrong when you choose “Other”.")
        return cleaned


class DeleteAccountForm(forms.Form):
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text="Type your password to confirm.",
    )

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self):
        if not self.user.check_password(self.cleaned_data["password"]):
            raise forms.ValidationError("That is not your password.")
        return self.cleaned_data["password"]


class DecisionForm(forms.Form):
    """A moderator's decision on one reported item (app/views/moderation.py)."""

    DECISIONS = [("approve", "Approve"), ("hide", "Hide"), ("nsfw", "Mark NSFW"), ("delete", "Delete images")]

    decision = forms.ChoiceField(choices=DECISIONS, error_messages={"required": "Choose what to do with it."})
    reason = forms.CharField(
        label="Reason",
        max_length=500,
        error_messages={"required": "Give a reason: the owner reads it, and it goes into the audit trail."},
        help_text="The owner reads it; it goes into the audit trail.",
    )
    tell_reporters = forms.BooleanField(label="Tell the reporters too", required=False)


# --- bench: prompt sets and benchmark runs ---------------------------------------


class PromptSetForm(forms.Form):
    """A user's own prompt set: pasted lines, or a CSV file (prompt, category)."""

    name = forms.CharField(max_length=200, label="Name of the set", error_messages={"required": "Give the set a name."})
    lines = forms.CharField(
        required=False,
        label="Prompts, one a line",
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text="Or upload a CSV file below instead.",
    )
    file = forms.FileField(
        required=False,
        label="CSV file",
        help_text="One prompt a row: prompt, category (the category may be left out); a header row is skipped.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv,text/plain"}),
    )

    def clean(self):
        cleaned = super().clean()
        upload, lines = cleaned.get("file"), cleaned.get("lines", "")
        if upload and lines.strip():
            self.add_error("lines", "Paste prompts or upload a file, not both.")
            return cleaned
        where = "file" if upload else "lines"
        try:
            rows = (
                prompt_sets.parse_csv(upload.read(prompt_sets.MAX_UPLOAD_BYTES + 1))
                if upload
                else (prompt_sets.parse_lines(lines))
            )
        except prompt_sets.SetError as exc:
            for messages in exc.errors.values():
                self.add_error(where, messages)
            return cleaned
        if not rows:
            self.add_error(where, "The set has no prompts: paste one a line, or upload a CSV.")
        cleaned["rows"], cleaned["where"] = rows, where
        return cleaned


class BenchmarkForm(forms.Form):
    """A benchmark run: a prompt set (all, a category or a sample) x versions x seeds."""

    title = forms.CharField(max_length=200, required=False, label="Title (optional)")
    prompt_set = forms.ModelChoiceField(queryset=None, label="Prompt set", empty_label=None)
    category = forms.ChoiceField(required=False, label="Category")
    sample_size = forms.IntegerField(
        required=False,
        min_value=1,
        label="Random sample of N prompts",
        help_text="Empty: every prompt of the set (or category).",
    )
    sample_seed = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=2**62,
        label="Sample seed",
        help_text="The same seed picks the same prompts and seeds again; empty: a random one.",
    )
    versions = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, label="Model versions")
    seed_count = forms.IntegerField(
        min_value=1, max_value=16, initial=1, label="Seeds per prompt", help_text="Each prompt runs with K seeds."
    )
    num_inference_steps = forms.IntegerField(required=False, min_value=1, max_value=500, label="Steps")
    width = forms.IntegerField(required=False, min_value=64, max_value=4096, label="Width")
    height = forms.IntegerField(required=False, min_value=64, max_value=4096, label="Height")
    visibility = forms.ChoiceField(choices=Visibility.choices, initial=Visibility.UNLISTED, label="Visibility")

    def __init__(self, prompt_set_queryset, versions, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["prompt_set"].queryset = prompt_set_queryset
        self.version_map = {version.id: version for version in versions}
        names = [str(version.model) for version in versions]
        # A model with several versions: each named by its id too.
        self.fields["versions"].choices = [
            (version.id, name if names.count(name) == 1 else f"{name} ({version.id[:8]})")
            for version, name in zip(versions, names)
        ]
        groups, names = [("", "Every category")], {s.pk: s.name for s in prompt_set_queryset}
        pairs = (
            Prompt.objects.filter(prompt_set__in=list(names))
            .exclude(category="")
            .values_list("prompt_set_id", "category")
        )
        by_set = {}
        for set_id, category in pairs.distinct():
            by_set.setdefault(set_id, set()).add(category)
        for set_id, name in names.items():
            groups.append((name, [(f"{set_id}:{c}", c) for c in sorted(by_set.get(set_id, ()))]))
        self.fields["category"].choices = groups

    def clean(self):
        cleaned = super().clean()
        value, prompt_set = cleaned.get("category") or "", cleaned.get("prompt_set")
        set_id, _, category = value.partition(":")
        if value and prompt_set is not None and set_id != str(prompt_set.pk):
            self.add_error("category", f"This category is not in {prompt_set.name}.")
        cleaned["category_name"] = category
        cleaned["chosen_versions"] = [self.version_map[pk] for pk in cleaned.get("versions", [])]
        return cleaned

    def run_input(self):
        return {
            field: self.cleaned_data[field]
            for field in ("num_inference_steps", "width", "height")
            if self.cleaned_data.get(field) is not None
        }


# --- Fine-tuning (trainapi) ---------------------------------------------------------


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one field: images, or a zip or tar of them."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": "image/png,image/jpeg,image/webp,.zip,.tar"}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        if not data:
            raise forms.ValidationError("Drop at least one image, or a zip or tar of them.", code="required")
        single = super().clean
        return [single(item, initial) for item in data] if isinstance(data, (list, tuple)) else [single(data, initial)]


class FineTuneForm(forms.Form):
    """The Fine-tune page: a base version, the images, a trigger word and
    steps (defaults per family: app.services.trainings.FAMILY_DEFAULTS), and
    the model of the user's the new version goes to."""

    base = forms.ChoiceField(label="Base version")
    images = MultipleFileField(
        label="Training images",
        help_text="4-20 photos of your subject (PNG, JPEG, WEBP), or one zip or tar of them.",
    )
    trigger_word = forms.RegexField(
        regex=r"^[^\s<>\"'`{}]{1,40}$",
        initial="TOK",
        max_length=40,
        help_text="A rare word the fine-tune learns your subject as; put it in prompts to use it.",
        error_messages={"invalid": "One word of 1-40 characters, no spaces or quotes."},
    )
    steps = forms.IntegerField(
        label="Training steps", min_value=1, max_value=20000, required=False, help_text="Empty: the base's default."
    )
    destination = forms.SlugField(
        label="New model name",
        max_length=100,
        help_text="A model of yours the fine-tune becomes a version of (made if you have none of that name).",
    )

    def __init__(self, versions, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["base"].choices = [(version.id, f"{version.model} ({version.id[:8]})") for version in versions]
