"""The kinds of model server a model or a deployment runs on, in Replicate's
shape ({"sku", "name"}, GET /v1/hardware) and with Replicate's SKUs where they
exist, so code written for Replicate names them the same. A deployment's
pool of Cog servers is of one kind; a model's `hardware` says which it is
meant for."""

HARDWARE = (
    ("cpu", "CPU"),
    ("gpu-t4", "Nvidia T4 GPU"),
    ("gpu-l40s", "Nvidia L40S GPU"),
    ("gpu-a100-large", "Nvidia A100 (80GB) GPU"),
    ("gpu-h100", "Nvidia H100 GPU"),
    ("gpu-h200", "Nvidia H200 GPU"),
)

SKUS = frozenset(sku for sku, _ in HARDWARE)


def as_json():
    return [{"sku": sku, "name": name} for sku, name in HARDWARE]
