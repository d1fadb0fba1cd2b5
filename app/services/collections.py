"""Collections of models, as Replicate's /v1/collections: those Lightbox
makes itself from what models take (BUILT_IN), and those staff curate in the
admin (Collection rows). A reader sees only the models they may see."""

from dataclasses import dataclass

from django.db.models import Prefetch

from app.models import Collection, Model, Version


@dataclass(frozen=True)
class BuiltIn:
    slug: str
    name: str
    description: str
    full_description: str = ""

    def takes(self, version):
        """Whether a model whose latest version is `version` belongs here."""
        return "prompt" in version.input_schema.get("properties", {})


TEXT_TO_IMAGE = BuiltIn(
    "text-to-image",
    "Text to image",
    "Models that draw images from a text prompt.",
    "Every model whose latest version takes a `prompt`.",
)
BUILT_IN = {TEXT_TO_IMAGE.slug: TEXT_TO_IMAGE}


def listed():
    return [*BUILT_IN.values(), *Collection.objects.all()]


def get(slug):
    if slug in BUILT_IN:
        return BUILT_IN[slug]
    return Collection.objects.filter(slug=slug).first()


def models_of(collection, user):
    """The collection's models `user` may see, by name, each with its run count."""
    models = Model.objects.visible_to(user).with_run_count().order_by("owner", "name")
    if isinstance(collection, BuiltIn):
        models = models.prefetch_related(Prefetch("versions", queryset=Version.objects.order_by("-created_at")))
        return [model for model in models if model.latest_version and collection.takes(model.latest_version)]
    return list(models.filter(collections=collection).prefetch_related("versions"))
