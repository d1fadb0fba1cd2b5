"""Forms. They only validate; views save.

The playground form is built from the chosen versions' input schemas: the
common fields once (app.services.comparisons.COMMON_FIELDS), each version's own fields
under "advanced". Ranges differ between versions, so the common fields only
check types here; the comparison mapping fits each value to each version.
"""

from urllib.parse import parse_qs, urlsplit

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm, UserCreationForm

from app.core import schema, throttle, uploads
from app.models import Invite, Report, Visibility
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
    """A form field for one property schema (types only; ranges are the mapping's)."""
    kind = spec.get("type")
    label = _label(name, spec)
    attrs = {}
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
    if kind == "integer":
        return forms.IntegerField(
            label=label,
            required=required,
            help_text=help_text,
            widget=forms.NumberInput(attrs={"inputmode": "numeric", "placeholder": "default"}),
        )
    if kind == "number":
        return forms.FloatField(
            label=label,
            required=required,
            help_text=help_text,
            widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal", "placeholder": "default"}),
        )
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
    widget = forms.Textarea(attrs={"rows": 3}) if name in TEXTAREA_FIELDS else forms.TextInput(attrs=attrs)
    max_length = spec.get("maxLength")
    if not isinstance(max_length, int) or max_length > settings.MAX_TEXT_LENGTH:
        max_length = settings.MAX_TEXT_LENGTH
    return forms.CharField(
        label=label, required=required, help_text=help_text, widget=widget, strip=True, max_length=max_length
    )


def _merged_spec(name, versions):
    """One spec for a common field: the first version's, with every version's choices."""
    specs = [schema.field_specs(version)[name] for version in versions if name in schema.field_specs(version)]
    merged = dict(specs[0])
    if any(spec.get("type") == "number" for spec in specs):
        merged["type"] = "number"
    enums = [value for spec in specs for value in spec.get("enum", [])]
    if enums and all("enum" in spec for spec in specs):
        merged["enum"] = list(dict.fromkeys(enums))
    else:
        merged.pop("enum", None)
    return merged


def _defaults_text(name, versions):
    parts = []
    for version in versions:
        spec = schema.field_specs(version).get(name)
        if spec is None:
            parts.append(f"{version.model.name}: not an input")
            continue
        bits = []
        if spec.get("default") not in (None, ""):
            bits.append(f"default {spec['default']}")
        if "minimum" in spec or "maximum" in spec:
            bits.append(f"{spec.get('minimum', '…')}–{spec.get('maximum', '…')}")
        if bits:
            parts.append(f"{version.model.name}: {', '.join(bits)}")
    return "; ".join(parts)


def advanced_name(version, field):
    return f"{version.id[:12]}-{field}"


class PlaygroundForm(forms.Form):
    publish = forms.BooleanField(
        label="Publish to the gallery",
        required=False,
        help_text="Otherwise the comparison is unlisted: only people with its link can see it.",
    )
    mask_painted = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, versions, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.versions = list(versions)
        self.common_names = []
        for name in COMMON_FIELDS:
            having = [version for version in self.versions if name in schema.field_specs(version)]
            if not having:
                continue
            spec = _merged_spec(name, having)
            description = _description(having[0], name)
            help_text = " ".join(filter(None, [description, _defaults_text(name, self.versions)]))
            self.fields[name] = _field_for(name, spec, required=(name == "prompt"), help_text=help_text)
            if name == "seed":
                self.fields[name].widget.attrs["placeholder"] = "random, the same for all"
            self.common_names.append(name)
        self.advanced = []
        for version in self.versions:
            names = []
            for name, spec in schema.field_specs(version).items():
                if name in COMMON_FIELDS:
                    continue
                help_text = _description(version, name)
                if spec.get("default") not in (None, ""):
                    help_text += f" Default: {spec['default']}."
                if "minimum" in spec or "maximum" in spec:
                    help_text += f" Range {spec.get('minimum', '…')}–{spec.get('maximum', '…')}."
                field = _field_for(name, spec, help_text=help_text.strip())
                self.fields[advanced_name(version, name)] = field
                names.append(advanced_name(version, name))
            if names:
                self.advanced.append((version, names))

    def common_fields(self):
        return [self[name] for name in self.common_names]

    def advanced_groups(self):
        return [(version, [self[name] for name in names]) for version, names in self.advanced]

    @staticmethod
    def _clean_image(upload):
        if not upload:
            return None
        # Checked and re-encoded as every upload is (LIGHTBOX_UPLOAD_IMAGE_MAX_BYTES).
        return uploads.clean_upload(upload).data_uri

    def clean(self):
        cleaned = super().clean()
        for name in ("image", "mask"):
            if name in self.fields and not self.errors.get(name):
                try:
                    cleaned[name] = self._clean_image(cleaned.get(name))
                except forms.ValidationError as exc:
                    self.add_error(name, exc)
        painted = cleaned.get("mask_painted") or ""
        if "mask" in self.fields and painted.startswith("data:image/png;base64,") and not cleaned.get("mask"):
            cleaned["mask"] = painted
        if cleaned.get("mask") and not cleaned.get("image"):
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


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="What the token is for, e.g. “laptop”.")


class VisibilityForm(forms.Form):
    visibility = forms.ChoiceField(choices=Visibility.choices)


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
