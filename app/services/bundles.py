"""Reproducibility bundles (docs/bundles.md): export a prediction, a
comparison, a grid or a benchmark run as a zip of manifest.json and PNGs, and
import one: map its versions to this catalog, re-run what can run as new
predictions of the importer (their limits apply), and record, per image, what
it should reproduce (a Reproduction; app.services.reproductions judges it).

Import is all or nothing: the bundle is read and checked whole first
(app.core.bundles), everything is saved in one transaction, and the images
written for it are deleted again if anything fails.
"""

import hashlib
import importlib.metadata
import json
import re

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from app.core import bundles, schema
from app.core.bundles import BundleError
from app.models import (
    Access,
    BenchmarkRun,
    Comparison,
    Grid,
    Model,
    Prediction,
    Prompt,
    PromptSet,
    Reproduction,
    ReproductionItem,
    Version,
    Visibility,
)
from app.services import backends, catalog, comparisons, predictions

LOCATION_KINDS = {Version.Backend.COG: "cog-server", Version.Backend.REPLICATE: "replicate"}
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")

__all__ = ["BundleError", "export", "import_bundle"]


def lightbox_version():
    try:
        return importlib.metadata.version("lightbox")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def schema_hash(openapi_schema):
    return hashlib.sha256(json.dumps(openapi_schema, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# --- Export -------------------------------------------------------------------


def export(item, viewer):
    """(file name, zip bytes) of a Prediction, Comparison, Grid or BenchmarkRun,
    with what `viewer` may see of it (each prediction by its own access rule,
    nsfw images only for those who may see them)."""
    if isinstance(item, Prediction):
        kind, rows, loose, run = "prediction", [], [item], None
    elif isinstance(item, Comparison):
        kind, rows, loose, run = "comparison", [item], [], None
    elif isinstance(item, Grid):
        kind, rows, loose = "grid", list(item.comparisons.order_by("grid_z", "grid_y", "grid_x")), []
        run = {
            "title": item.title,
            "input": item.input,
            "extra_input": item.extra_input,
            "seed": item.seed,
            "axes": item.axes,
        }
    elif isinstance(item, BenchmarkRun):
        rows = list(item.comparisons.select_related("benchmark_prompt").order_by("benchmark_prompt__position", "seed"))
        kind, loose = "benchmark", []
        run = {
            "title": item.title,
            "prompt_set": {"slug": item.prompt_set.slug, "name": item.prompt_set.name},
            "category": item.category,
            "sample_size": item.sample_size,
            "sample_seed": item.sample_seed,
            "seeds": item.seeds,
            "input": item.input,
        }
    else:
        raise TypeError(f"cannot export {type(item).__name__}")
    manifest, images = _manifest(kind, item, rows, loose, run, viewer)
    return f"lightbox-{kind}-{item.pk}.zip", bundles.write(manifest, images)


def _manifest(kind, item, rows, loose, run, viewer):
    shown = [p for p in loose if p.access_for(viewer) == Access.OPEN]
    comparison_entries = []
    for comparison in rows:
        members = list(comparison.predictions.select_related("version__model").order_by("created_at"))
        shown += [p for p in members if p.access_for(viewer) == Access.OPEN]
        comparison_entries.append(_comparison_entry(comparison))
    versions = {p.version_id: p.version for p in shown}
    images, prediction_entries = {}, []
    for prediction in shown:
        prediction_entries.append(_prediction_entry(prediction, viewer, images))
    manifest = {
        "format": bundles.FORMAT,
        "kind": kind,
        "exported_at": timezone.now().isoformat(),
        "lightbox": {"version": lightbox_version(), "site": settings.SITE_URL},
        "source": {"id": item.pk, "url": settings.SITE_URL + _url(kind, item)},
        "run": run,
        "versions": [_version_entry(version) for version in versions.values()],
        "comparisons": comparison_entries,
        "predictions": prediction_entries,
    }
    return manifest, images


def _url(kind, item):
    return {"prediction": f"/p/{item.pk}", "comparison": f"/c/{item.pk}"}.get(kind, "")


def _version_entry(version):
    entry = {
        "id": version.id,
        "model": str(version.model),
        "backend": version.backend,
        # Where it ran, as a kind only: a Cog server's address is this site's own business.
        "location_kind": LOCATION_KINDS.get(version.backend, version.backend),
        "schema_sha256": schema_hash(version.openapi_schema),
        "cog_version": version.cog_version,
        "hardware": version.model.hardware,
        "created_at": version.created_at.isoformat(),
    }
    if version.backend == Version.Backend.COG:
        # As the server reports it at export (its health check); empty when it is down.
        entry["server"] = backends.cog.runtime(version.location)
    return entry


def _comparison_entry(comparison):
    entry = {
        "id": comparison.id,
        "input": comparison.input,
        "seed": comparison.seed,
        "extra_input": comparison.extra_input,
        "changes": comparison.changes,
    }
    if comparison.grid_id:
        entry["grid"] = [comparison.grid_x, comparison.grid_y, comparison.grid_z]
    if comparison.benchmark_prompt_id:
        prompt = comparison.benchmark_prompt
        entry["benchmark_prompt"] = {"position": prompt.position, "text": prompt.text, "category": prompt.category}
    return entry


def _prediction_entry(prediction, viewer, images):
    outputs, withheld = [], []
    for output in prediction.outputs.all():
        if not output.file or output.content_type != "image/png":
            withheld.append({"index": output.index, "why": "no PNG stored (deleted by moderators, or not an image)"})
            continue
        if not output.shows_explicit_to(viewer):
            withheld.append({"index": output.index, "why": "flagged NSFW: only those who opted in get the image"})
            continue
        with output.file.open("rb") as handle:
            data = handle.read()
        name = f"images/{prediction.id}-{output.index}.png"
        images[name] = data
        outputs.append(
            {
                "index": output.index,
                "file": name,
                "sha256": hashlib.sha256(data).hexdigest(),
                "pixel_sha256": bundles.pixel_hash(data),
                "width": output.width,
                "height": output.height,
                "content_type": output.content_type,
            }
        )
    return {
        "id": prediction.id,
        "comparison": prediction.comparison_id,
        "version": prediction.version_id,
        "model": str(prediction.version.model),
        "status": prediction.status,
        "input": prediction.input,
        "seed": prediction.input.get("seed"),
        "created_at": prediction.created_at.isoformat(),
        "completed_at": prediction.completed_at.isoformat() if prediction.completed_at else None,
        "predict_time": prediction.predict_time,
        # What the model server said it ran on, in this prediction's logs (our
        # inference server prints a "runtime:" line with each prediction).
        "runtime": _runtime(prediction.logs),
        "outputs": outputs,
        "withheld": withheld,
    }


def _runtime(logs):
    for line in (logs or "").splitlines():
        if line.startswith("runtime: "):
            return line[len("runtime: ") :][:300]
    return ""


# --- Import -------------------------------------------------------------------


def import_bundle(owner, data):
    """Re-run what `data` (a bundle's bytes) holds as `owner`'s new runs and
    return the Reproduction that pairs each image with its new run. Raises
    BundleError (the bundle cannot be read, or nothing in it can run here)
    or limits.RunRefused; then nothing is saved."""
    bundle = bundles.read(data, settings.BUNDLE_MAX_BYTES)
    manifest = bundle.manifest
    _check_shapes(manifest)
    mapping, picked = _map_versions(owner, manifest["versions"])
    plans, skipped = _plan(owner, manifest, picked, bundle.images)
    if not plans:
        reasons = "; ".join(f"{entry['what']}: {entry['why']}" for entry in skipped) or "it holds no images"
        raise BundleError(f"Nothing in this bundle can run here ({reasons}).")
    written = []
    try:
        with transaction.atomic():
            reproduction = _save(owner, manifest, mapping, skipped, plans, written)
    except schema.InputError as exc:
        for field_file in written:
            field_file.storage.delete(field_file.name)
        raise BundleError(f"A run of this bundle was refused, so nothing was imported: {exc}") from None
    except Exception:
        for field_file in written:
            field_file.storage.delete(field_file.name)
        raise
    return reproduction


def _check_shapes(manifest):
    """The manifest's entries have the keys import reads, of the right kinds."""
    for entry in manifest["versions"]:
        if not (isinstance(entry, dict) and _is_id(entry.get("id")) and isinstance(entry.get("model"), str)):
            raise BundleError("Each version in manifest.json needs an 'id' and a 'model' (owner/name).")
    known = {entry["id"] for entry in manifest["versions"]}
    comparison_ids = set()
    for entry in manifest["comparisons"]:
        if not (isinstance(entry, dict) and _is_id(entry.get("id")) and isinstance(entry.get("input"), dict)):
            raise BundleError("Each comparison in manifest.json needs an 'id' and an 'input' object.")
        if not isinstance(entry.get("extra_input", {}), dict):
            raise BundleError(f"Comparison {entry['id']}: 'extra_input' must be an object.")
        comparison_ids.add(entry["id"])
    for entry in manifest["predictions"]:
        if not (_is_id(entry.get("id")) and isinstance(entry.get("input"), dict)):
            raise BundleError("Each prediction in manifest.json needs an 'id' and an 'input' object.")
        if not isinstance(entry.get("version"), str) or entry["version"] not in known:
            raise BundleError(f"Prediction {entry['id']} names a version the manifest does not list.")
        if entry.get("comparison") is not None and (
            not isinstance(entry["comparison"], str) or entry["comparison"] not in comparison_ids
        ):
            raise BundleError(f"Prediction {entry['id']} names a comparison the manifest does not list.")
        for output in entry["outputs"]:
            index = output.get("index", 0)
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 1000:
                raise BundleError(f"Prediction {entry['id']}: each output needs an 'index' from 0 to 999.")
            if not isinstance(output.get("pixel_sha256"), str):
                raise BundleError(f"Prediction {entry['id']}: each output needs a 'pixel_sha256'.")


def _is_id(value):
    return isinstance(value, str) and bool(ID_RE.match(value))


def _map_versions(owner, entries):
    """([{model, version, picked, how}], {bundle version id: Version or None}).
    By id first; else the latest version of the model with the same name."""
    visible = Model.objects.visible_to(owner)
    mapping, picked = [], {}
    for entry in entries:
        model_name = entry["model"][:200]
        version = Version.objects.select_related("model").filter(pk=entry["id"], model__in=visible).first()
        if version is not None:
            how = "the same version, by its id"
        else:
            owner_name, _, name = model_name.partition("/")
            model = visible.filter(owner=owner_name, name=name).first()
            version = model.latest_version if model else None
            if version is None:
                how = f"not run: this Lightbox has neither version {entry['id'][:12]} nor a model {model_name}"
            else:
                same_schema = schema_hash(version.openapi_schema) == entry.get("schema_sha256")
                how = (
                    f"version {entry['id'][:12]} is not here, so {model_name}'s latest version "
                    f"{version.id[:12]} (by model name; "
                    + ("same input schema)" if same_schema else "its input schema differs: inputs are mapped to it)")
                )
        picked[entry["id"]] = version
        mapping.append(
            {"model": model_name, "version": entry["id"][:64], "picked": version.id if version else None, "how": how}
        )
    return mapping, picked


def _plan(owner, manifest, picked, images):
    """([(prediction entry, version, input, [(output entry, bytes, pixel hash)])], skipped):
    what will run, checked before anything is saved."""
    plans, skipped = [], []
    for entry in manifest["predictions"]:
        what = f"{str(entry.get('model', ''))[:100]} · prediction {entry['id']}"
        version = picked[entry["version"]]
        if version is None:
            skipped.append({"what": what, "why": f"no version of {str(entry.get('model'))[:100]} here"})
            continue
        if not entry["outputs"]:
            skipped.append({"what": what, "why": f"it has no image to reproduce (it {entry.get('status', 'ended')})"})
            continue
        outputs = []
        for output in entry["outputs"]:
            data = images[output["file"]]
            try:
                pixels = bundles.pixel_hash(data)
            except ValueError:
                raise BundleError(f"{output['file']} is not a PNG image Pillow can read.") from None
            if pixels != output["pixel_sha256"]:
                raise BundleError(f"{output['file']}'s pixels do not match the manifest: the bundle was changed.")
            outputs.append((output, data, pixels))
        given = entry["input"]
        if version.id != entry["version"]:
            given, _ = comparisons.map_input(version, given)
        try:
            catalog.ensure_schema(version)
            cleaned = schema.validate_input(version, given)
            if not catalog.refresh_availability(version):
                raise schema.InputError({"version": [f"unavailable: {version.unavailable_reason}"]})
        except schema.InputError as exc:
            skipped.append({"what": what, "why": str(exc)[:500]})
            continue
        plans.append((entry, version, cleaned, outputs))
    return plans, skipped


def _save(owner, manifest, mapping, skipped, plans, written):
    kind = manifest.get("kind") if manifest.get("kind") in ("prediction", "comparison", "grid", "benchmark") else ""
    run = manifest.get("run") if isinstance(manifest.get("run"), dict) else {}
    source = {
        "kind": kind,
        "id": str(manifest.get("source", {}).get("id", ""))[:100] if isinstance(manifest.get("source"), dict) else "",
        "lightbox": manifest.get("lightbox") if isinstance(manifest.get("lightbox"), dict) else {},
        "exported_at": str(manifest.get("exported_at", ""))[:40],
    }
    first_prompt = next((str(p["input"].get("prompt") or "") for p in manifest["predictions"]), "")
    title = str(run.get("title") or "")[:200] or first_prompt[:200] or f"{kind or 'bundle'} {source['id']}".strip()
    reproduction = Reproduction.objects.create(
        owner=owner, kind=Reproduction.Kind.IMPORT, title=title, source=source, mapping=mapping, skipped=skipped
    )
    parent = _parent(owner, kind, run, reproduction, plans)
    made = {}  # bundle comparison id -> new Comparison
    entries = {entry["id"]: entry for entry in manifest["comparisons"]}
    position = 0
    for entry, version, cleaned, outputs in plans:
        comparison = None
        if entry.get("comparison"):
            comparison = made.get(entry["comparison"]) or _comparison(
                owner, entries[entry["comparison"]], parent, picked=mapping
            )
            made[entry["comparison"]] = comparison
        prediction = predictions.start(
            version,
            cleaned,
            owner=owner,
            source=Prediction.Source.WEB,
            visibility=Visibility.PRIVATE,
            comparison=comparison,
        )
        for output, data, pixels in outputs:
            item = ReproductionItem(
                reproduction=reproduction,
                position=position,
                label=f"{version.model} · {str(cleaned.get('prompt', ''))[:200]}",
                source_prediction=entry["id"],
                expected_pixels=pixels,
                prediction=prediction,
                index=output.get("index", 0),
            )
            item.expected_file.save(f"{position}.png", ContentFile(data), save=False)
            written.append(item.expected_file)
            item.save()
            position += 1
    if kind == "comparison" and len(made) == 1:
        reproduction.comparison = next(iter(made.values()))
        reproduction.save(update_fields=["comparison"])
    return reproduction


def _comparison(owner, entry, parent, picked):
    ids = {row["version"]: row["picked"] for row in picked}
    extra = entry.get("extra_input") or {}
    fields = {
        "owner": owner,
        "input": entry["input"],
        "seed": entry.get("seed") if isinstance(entry.get("seed"), int) else None,
        "extra_input": {ids[k]: v for k, v in extra.items() if ids.get(k) and isinstance(v, dict)},
        "visibility": Visibility.PRIVATE,
    }
    if isinstance(parent, Grid):
        cell = entry.get("grid") if isinstance(entry.get("grid"), list) else [0, 0, 0]
        x, y, z = ([int(v) for v in cell if isinstance(v, int) and 0 <= v < 1000] + [0, 0, 0])[:3]
        fields.update(grid=parent, grid_x=x, grid_y=y, grid_z=z)
    elif isinstance(parent, BenchmarkRun):
        fields.update(benchmark=parent, benchmark_prompt=_benchmark_prompt(parent, entry))
    return Comparison.objects.create(**fields)


def _parent(owner, kind, run, reproduction, plans):
    """The grid or benchmark run the bundle's comparisons belong to, made anew."""
    if kind == "grid":
        grid = Grid.objects.create(
            owner=owner,
            title=str(run.get("title") or "")[:200],
            input=run.get("input") if isinstance(run.get("input"), dict) else {},
            extra_input=run.get("extra_input") if isinstance(run.get("extra_input"), dict) else {},
            seed=run.get("seed") if isinstance(run.get("seed"), int) else None,
            axes=run.get("axes") if isinstance(run.get("axes"), list) else [],
            visibility=Visibility.PRIVATE,
        )
        reproduction.grid = grid
        reproduction.save(update_fields=["grid"])
        return grid
    if kind == "benchmark":
        described = run.get("prompt_set") if isinstance(run.get("prompt_set"), dict) else {}
        slug = re.sub(r"[^a-z0-9-]", "", str(described.get("slug", "")).lower())[:80] or "imported"
        prompt_set = PromptSet.objects.usable_by(owner).filter(slug=slug).order_by("owner_id").first()
        if prompt_set is None:
            # The set is not here: the importer gets their own copy, filled from the bundle's prompts.
            prompt_set = PromptSet.objects.create(
                owner=owner, slug=f"{slug}-{reproduction.id[:6]}", name=str(described.get("name") or slug)[:200]
            )
        benchmark = BenchmarkRun.objects.create(
            owner=owner,
            title=str(run.get("title") or "")[:200],
            prompt_set=prompt_set,
            category=str(run.get("category") or "")[:100],
            seeds=[s for s in run.get("seeds", []) if isinstance(s, int)] if isinstance(run.get("seeds"), list) else [],
            input=run.get("input") if isinstance(run.get("input"), dict) else {},
            status=BenchmarkRun.Status.RUNNING,
            visibility=Visibility.PRIVATE,
        )
        benchmark.versions.set({version.id for _, version, _, _ in plans})
        reproduction.benchmark = benchmark
        reproduction.save(update_fields=["benchmark"])
        return benchmark
    return None


def _benchmark_prompt(benchmark, entry):
    described = entry.get("benchmark_prompt") if isinstance(entry.get("benchmark_prompt"), dict) else {}
    text = str(described.get("text") or entry["input"].get("prompt") or "")
    found = benchmark.prompt_set.prompts.filter(text=text).first()
    if found is not None:
        return found
    position = (benchmark.prompt_set.prompts.order_by("-position").values_list("position", flat=True).first() or 0) + 1
    return Prompt.objects.create(
        prompt_set=benchmark.prompt_set, position=position, text=text, category=str(described.get("category", ""))[:100]
    )
