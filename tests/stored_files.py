"""After a fault, is every output of a prediction in storage, and nothing else?

The one check the fault tests (tests/engine) and the faults benchmark
(bench/faults.py) make once their predictions have ended:

- lost: an Output row whose file (or thumbnail, or blurred thumbnail for an
  nsfw one) is not in storage, or a succeeded prediction with fewer Output
  rows than the outputs its model returned;
- orphaned: a file under outputs/ that appeared since `before` and no Output
  row names, a file under uploads/ that appeared since `before` (a Cog
  server's upload must be gone once its prediction has ended), an Upload
  row of one of the predictions, or an upload of one of them still in the
  spool (app.core.spool, under SPOOL_DIR).

Django must be set up (pytest-django, or bench/harness.py's Django steps).
"""

from dataclasses import dataclass, field


def snapshot():
    """The names of every file under outputs/ and uploads/ in storage now."""
    from app.services import storage

    return frozenset(name for folder in storage.STORED_FOLDERS for name in storage.walk(folder))


@dataclass
class Audit:
    lost: list = field(default_factory=list)
    orphaned: list = field(default_factory=list)

    def __bool__(self):
        """True when nothing was lost or orphaned."""
        return not self.lost and not self.orphaned


def audit(predictions, before=frozenset()):
    """Check the stored files of `predictions` (rows or ids), and every file
    that appeared in storage since the `before` snapshot."""
    from django.conf import settings
    from django.core.files.storage import default_storage
    from django.db.models import Q

    from app.core import spool
    from app.models import Output, Prediction, Upload

    ids = [getattr(prediction, "pk", prediction) for prediction in predictions]
    result = Audit()
    rows = Prediction.objects.filter(pk__in=ids).prefetch_related("outputs")
    for prediction in rows:
        outputs = list(prediction.outputs.all())
        if prediction.status == Prediction.Status.SUCCEEDED:
            returned = [item for item in prediction.output or [] if isinstance(item, str)]
            stored = [output.index for output in outputs]
            if not returned or stored != list(range(len(returned))):
                result.lost.append(f"{prediction.id}: the model returned {len(returned)} outputs, stored {stored}")
        for output in outputs:
            if output.rating == Output.Rating.BLOCKED:
                continue  # deleted by a moderator, on purpose
            files = [output.file]
            if output.width:
                files.append(output.thumbnail)
            if output.rating == Output.Rating.NSFW:
                files.append(output.blurred_thumbnail)
            for file in files:
                if not file or not default_storage.exists(file.name):
                    result.lost.append(f"{prediction.id}/{output.index}: {file.field.name} {file.name or '(none)'}")
    new = snapshot() - before
    named = set()
    for names in Output.objects.filter(
        Q(file__in=new) | Q(thumbnail__in=new) | Q(blurred_thumbnail__in=new)
    ).values_list("file", "thumbnail", "blurred_thumbnail"):
        named.update(names)
    result.orphaned += sorted(name for name in new if name.startswith("uploads/") or name not in named)
    remote_ids = {prediction.remote_id for prediction in rows if prediction.remote_id}
    for upload in Upload.objects.filter(remote_prediction_id__in=set(ids) | remote_ids):
        result.orphaned.append(f"Upload {upload.pk} of {upload.remote_prediction_id} ({upload.file.name})")
    for name in spool.names(settings.SPOOL_DIR):
        entry = spool.read(settings.SPOOL_DIR, name, with_data=False)
        if entry and entry[0].get("remote_prediction_id") in set(ids) | remote_ids:
            result.orphaned.append(f"spooled upload {name} of {entry[0]['remote_prediction_id']}")
    return result


class StoredFiles:
    """What the `stored_files` fixture gives a test: a snapshot taken when
    the test began, and the assertion to make once its predictions ended."""

    def __init__(self):
        self.before = snapshot()

    def assert_intact(self, *predictions):
        result = audit(predictions, self.before)
        assert not result.lost, f"output files lost: {result.lost}"
        assert not result.orphaned, f"files orphaned: {result.orphaned}"
