"""The kinds of model server a model or a deployment can run on, in
Replicate's shape ({"sku", "name"}, /v1/hardware). Lightbox runs models on Cog
servers; what matters to it is who starts them: Lightbox itself, on this
machine (a local model, `LIGHTBOX_LOCAL_MODELS`), or someone else, at a URL an
admin registers."""

HARDWARE = (
    ("local", "Cog servers Lightbox starts on this machine"),
    ("cog", "Cog servers at URLs an admin registers"),
)

SKUS = frozenset(sku for sku, _ in HARDWARE)


def as_json():
    return [{"sku": sku, "name": name} for sku, name in HARDWARE]
