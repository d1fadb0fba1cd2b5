"""A Cog server uploads each output once, so the upload endpoint keeps the
bytes whatever else is down (the local spool), a full disk answers 507 and
says so in /healthz and the admin, an output that could not be received is
run again once, files appear only with their row, and what no row names is
swept once a day old."""

import builtins
import errno
import os
import threading
import time
from urllib.parse import urlsplit

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.db import DatabaseError, OperationalError, connection
from django.db.backends import utils
from django.test import Client

from app.core import spool
from app.models import Output, Prediction, ReconcilerState, Upload
from app.services import predictions, storage
from tasks import predictions as tasks
from tasks.reconciler import reconcile
from tests.conftest import wait_for_status, wait_until
from tests.moderation.conftest import _user, _version, login, png
from tests.moderation.test_cog_uploads import _completed, _data_uri, _put, _running
from tests.stored_files import snapshot

pytestmark = pytest.mark.django_db(transaction=True)

HEALTH_TOKEN = "health-" + "s" * 40
DAY = 24 * 3600


@pytest.fixture(autouse=True)
def spool_dir(settings, tmp_path):
    settings.SPOOL_DIR = tmp_path / "spool"
    return settings.SPOOL_DIR


@pytest.fixture
def version(transactional_db):
    return _version("local", "spooled-model", "cog", "http://127.0.0.1:9")


class FullDisk:
    """A file on a disk that fills up: `room` bytes go in, then ENOSPC (or `error`)."""

    def __init__(self, path, mode, room, error=errno.ENOSPC):
        self.fh = builtins.open(path, mode)
        self.room = room
        self.error = error

    def write(self, data):
        if len(data) > self.room:
            self.fh.write(data[: self.room])
            self.room = 0
            raise OSError(self.error, os.strerror(self.error), self.fh.name)
        self.room -= len(data)
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def fill_disk(monkeypatch, module, after=0, times=None, room=100, error=errno.ENOSPC):
    """Files `module` writes meet a full disk, after `after` files were
    written whole, `times` times (None: for good). Returns the paths opened."""
    opened = []

    def open_(path, mode="r", *args, **kwargs):
        if "r" in mode:
            return builtins.open(path, mode, *args, **kwargs)
        opened.append(path)
        full = len(opened) > after and (times is None or len(opened) <= after + times)
        return FullDisk(path, mode, room, error) if full else builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(module, "open", open_, raising=False)
    return opened


def _spooled(spool_dir):
    return sorted(os.listdir(spool_dir)) if spool_dir.exists() else []


def _upload_id(response):
    return urlsplit(response["Location"]).path.rstrip("/").split("/")[-2]


def _health(**headers):
    ReconcilerState.beat_ran()  # beat is fine: what fails is storage
    response = Client().get("/healthz", headers=headers)
    return response.status_code, response.json()


# --- A full disk ------------------------------------------------------------------------


def test_a_full_disk_answers_507_keeps_nothing_and_is_reported_in_healthz_and_the_admin(
    version, spool_dir, monkeypatch, settings
):
    settings.HEALTH_TOKEN = HEALTH_TOKEN
    staff = _user("staffer", is_staff=True, is_superuser=True)
    before = snapshot()
    fill_disk(monkeypatch, spool)

    response = _put(version.location, "out.png", png(), prediction_id="remote-1")

    assert response.status_code == 507
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 507 and problem["title"] == "Insufficient Storage"
    assert "disk that keeps uploads is full" in problem["detail"]
    # Nothing half-written is left: no spool entry, no temporary file, no row, no file.
    assert _spooled(spool_dir) == []
    assert Upload.objects.count() == 0 and snapshot() == before

    status, body = _health(Authorization=f"Bearer {HEALTH_TOKEN}")
    assert status == 503 and body["status"] == "failing"
    assert body["storage"].startswith("disk full: ") and "No space left on device" in body["storage"]
    assert body["database"] == "ok"
    assert _health() == (503, {"status": "failing"})  # anonymous: the status only

    page = login(Client(), staff).get("/admin/")
    assert page.status_code == 200
    assert b'id="storage-problem"' in page.content and b"Storage: disk full" in page.content

    cache.delete(storage.DISK_FULL_KEY)  # a minute later, with room again
    status, body = _health(Authorization=f"Bearer {HEALTH_TOKEN}")
    assert (status, body["status"], body["storage"]) == (200, "ok", "ok")
    assert b"storage-problem" not in login(Client(), staff).get("/admin/").content


def test_an_upload_that_cannot_be_written_for_another_reason_answers_503_and_keeps_nothing(
    version, spool_dir, monkeypatch, settings
):
    settings.HEALTH_TOKEN = HEALTH_TOKEN
    before = snapshot()
    fill_disk(monkeypatch, spool, error=errno.EIO)

    response = _put(version.location, "out.png", png(), prediction_id="remote-1")

    assert response.status_code == 503 and response["Content-Type"] == "application/problem+json"
    assert response.json()["detail"] == "The file could not be written to disk: Input/output error."
    assert _spooled(spool_dir) == [] and Upload.objects.count() == 0 and snapshot() == before
    # Not a full disk: /healthz does not say so.
    assert _health(Authorization=f"Bearer {HEALTH_TOKEN}")[1]["storage"] == "ok"


def test_healthz_reports_a_disk_with_less_room_than_an_upload_may_take(spool_dir, monkeypatch, settings):
    settings.HEALTH_TOKEN = HEALTH_TOKEN
    monkeypatch.setattr(spool, "free_bytes", lambda path: 3 * 2**20)

    status, body = _health(Authorization=f"Bearer {HEALTH_TOKEN}")

    assert status == 503
    assert body["storage"] == f"disk full: 3 MB free for {spool_dir}, an upload may take 32 MB"


# --- The database or storage down while an upload arrives -------------------------------


def _database_down(execute, sql, params, many, context):
    raise OperationalError("server closed the connection unexpectedly")


def test_an_upload_is_kept_while_the_database_is_down_and_taken_by_the_completed_webhook(
    version, spool_dir, stored_files
):
    prediction = _running(version)

    with connection.execute_wrapper(_database_down):
        response = _put(version.location, "out.png", png(), prediction_id=prediction.id)
        assert response.status_code == 201
        served = Client().get(urlsplit(response["Location"]).path)  # and served meanwhile
        assert served.status_code == 200 and b"".join(served.streaming_content) == png()

    upload_id = _upload_id(response)
    assert _spooled(spool_dir) == [upload_id]  # kept on disk, not yet recorded
    assert Upload.objects.count() == 0

    # The database is back: the completed webhook records it and takes it.
    response = _completed(prediction, [response["Location"]])

    assert response.status_code == 200
    prediction.refresh_from_db()
    assert prediction.status == "succeeded", prediction.error
    assert prediction.outputs.get().sha256
    assert _spooled(spool_dir) == []
    stored_files.assert_intact(prediction)


def test_a_spooled_upload_is_recorded_by_the_reconciler_once_the_database_is_back(version, spool_dir, settings):
    with connection.execute_wrapper(_database_down):
        response = _put(version.location, "out.png", png(), prediction_id="remote-1")
    assert response.status_code == 201 and Upload.objects.count() == 0

    reconcile()

    upload = Upload.objects.get()
    assert upload.pk == _upload_id(response) and upload.remote_prediction_id == "remote-1"
    assert upload.server == version.location and upload.content_type == "image/png"
    with upload.file.open("rb") as fh:
        assert fh.read() == png()
    assert _spooled(spool_dir) == []
    upload.file.delete(save=False)


def test_a_spooled_upload_of_a_prediction_that_ended_meanwhile_is_dropped_not_recorded(
    version, spool_dir, stored_files
):
    prediction = _running(version)
    with connection.execute_wrapper(_database_down):
        response = _put(version.location, "out.png", png(), prediction_id=prediction.id)
    assert response.status_code == 201 and _spooled(spool_dir)
    predictions.fail(prediction, "The model server stopped answering.")

    reconcile()

    assert _spooled(spool_dir) == [] and Upload.objects.count() == 0
    stored_files.assert_intact(prediction)


def test_an_upload_whose_row_cannot_be_saved_leaves_no_file_in_storage(version, spool_dir, monkeypatch):
    before = snapshot()

    def insert_fails(self, *args, **kwargs):
        raise DatabaseError("could not extend file: No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(Upload, "save", insert_fails)
        response = _put(version.location, "out.png", png(), prediction_id="remote-1")

    assert response.status_code == 201  # the spool has it
    assert snapshot() == before  # no file without its row, not even a temporary one
    assert storage.drain_spool() == 1
    upload = Upload.objects.get()
    assert snapshot() - before == {upload.file.name}
    upload.file.delete(save=False)


def test_an_output_whose_row_cannot_be_saved_leaves_no_file_in_storage(version, monkeypatch):
    prediction = _running(version)
    before = snapshot()

    def insert_fails(self, *args, **kwargs):
        raise DatabaseError("the database went away")

    monkeypatch.setattr(Output, "save", insert_fails)
    with pytest.raises(DatabaseError):
        storage.store_outputs(prediction, [_data_uri(png(), "image/png")])

    assert snapshot() == before


def test_a_full_disk_while_outputs_are_stored_fails_the_prediction_cleanly(version, monkeypatch, stored_files):
    prediction = _running(version)
    locations = []
    for color in ((200, 30, 30), (30, 200, 30)):
        response = _put(version.location, "out.png", png(color), prediction_id=prediction.id)
        assert response.status_code == 201
        locations.append(response["Location"])
    # Output 0 (thumbnail, file) is stored whole; the disk fills during output 1.
    fill_disk(monkeypatch, storage, after=2)

    response = _completed(prediction, locations)

    assert response.status_code == 200  # not a 500 the server would retry eight times
    prediction.refresh_from_db()
    assert prediction.status == "failed"
    assert prediction.error == "Could not store the outputs: No space left on device (the disk is full)"
    assert prediction.error_code == Prediction.ErrorCode.OUTPUT_NOT_STORED
    assert prediction.outputs.count() == 0
    stored_files.assert_intact(prediction)  # output 0's files went too, and the uploads
    assert _completed(prediction, locations).status_code == 200  # a retry changes nothing
    prediction.refresh_from_db()
    assert prediction.status == "failed"


# --- Orphans ------------------------------------------------------------------------------


def _age(name, seconds=2 * DAY):
    path = default_storage.path(name) if not os.path.isabs(name) else name
    when = time.time() - seconds
    os.utime(path, (when, when))


def test_the_storage_sweep_deletes_day_old_files_no_row_names_and_keeps_the_rest(version, spool_dir):
    prediction = _running(version)
    storage.store_outputs(prediction, [_data_uri(png(), "image/png")])
    output = prediction.outputs.get()
    kept = [output.file.name, output.thumbnail.name]
    upload = Upload.objects.create(server=version.location, remote_prediction_id="remote-1")
    upload.file.save("kept.png", ContentFile(png()), save=True)
    kept.append(upload.file.name)
    orphans = [
        default_storage.save(f"outputs/zz/{prediction.id}-gone/0.png", ContentFile(png())),
        default_storage.save(f"outputs/zz/{prediction.id}-gone/.0.png.abc.part", ContentFile(b"half")),
        default_storage.save("uploads/orphan.png", ContentFile(png())),
    ]
    young = default_storage.save(f"outputs/zz/{prediction.id}-young/0.png", ContentFile(png()))
    for name in kept + orphans:
        _age(name)
    spool.write(spool_dir, "oldentry", {"server": version.location}, png())
    spool.write(spool_dir, "newentry", {"server": version.location}, png())
    _age(str(spool_dir / "oldentry"))

    call_command("sweep_storage", stdout=open(os.devnull, "w"), stderr=open(os.devnull, "w"))

    assert [name for name in orphans if default_storage.exists(name)] == []
    assert all(default_storage.exists(name) for name in kept + [young])
    assert _spooled(spool_dir) == ["newentry"]
    default_storage.delete(young)
    upload.file.delete(save=False)


# --- With a real Cog server, worker and web server ------------------------------------------


def test_an_upload_during_a_database_outage_ends_as_a_succeeded_prediction_once_it_is_back(
    worker, cog_version, alice, spool_dir, monkeypatch, stored_files
):
    """The web process loses its database while the model runs: the upload is
    accepted (the spool keeps it), the completed webhook is answered 500 until
    the database is back, and then the prediction succeeds with its image."""
    down = threading.Event()
    refused = []
    execute = utils.CursorWrapper.execute

    def web_without_database(self, sql, params=None):
        # The web server's threads (its results pool runs /hooks/); not this test's.
        if down.is_set() and threading.current_thread().name.startswith(("web_", "results_")):
            refused.append(sql)
            raise OperationalError("could not connect to server: Connection refused")
        return execute(self, sql, params)

    monkeypatch.setattr(utils.CursorWrapper, "execute", web_without_database)
    prediction = predictions.start(
        cog_version, {"prompt": "outage", "step_delay": 0.3, "num_inference_steps": 4}, owner=alice
    )
    wait_until(lambda: "step 1/4" in Prediction.objects.get(pk=prediction.pk).logs, message="the first step")

    down.set()
    wait_until(lambda: _spooled(spool_dir), message="the upload to be spooled")
    time.sleep(1.0)  # the completed webhook is refused meanwhile
    assert Upload.objects.count() == 0 and refused
    down.clear()

    prediction = wait_for_status(prediction.id)
    assert prediction.status == "succeeded", prediction.error
    assert prediction.output_reruns == 0 and prediction.dispatch_attempts == 1
    assert prediction.outputs.count() == 1
    assert _spooled(spool_dir) == []
    stored_files.assert_intact(prediction)


def test_an_output_the_model_server_could_not_upload_is_run_again_and_succeeds(
    worker, cog_version, alice, spool_dir, monkeypatch, stored_files
):
    fill_disk(monkeypatch, spool, times=1)  # the first upload meets a full disk, then there is room

    prediction = predictions.start(cog_version, {"prompt": "second time lucky"}, owner=alice)

    prediction = wait_for_status(prediction.id)
    assert prediction.status == "succeeded", prediction.error
    assert (prediction.output_reruns, prediction.dispatch_attempts) == (1, 2)
    assert prediction.outputs.count() == 1
    stored_files.assert_intact(prediction)


def test_a_prediction_whose_output_cannot_be_received_is_run_again_exactly_once(
    worker, cog_version, alice, spool_dir, monkeypatch, settings, stored_files
):
    opened = fill_disk(monkeypatch, spool)  # the disk stays full

    prediction = predictions.start(cog_version, {"prompt": "no room"}, owner=alice)

    prediction = wait_for_status(prediction.id)
    assert prediction.status == "failed", prediction.error
    assert prediction.error_code == Prediction.ErrorCode.OUTPUT_NOT_RECEIVED, prediction.error
    assert prediction.error.startswith("The model ran, but its server could not hand the output over to Lightbox")
    assert "507" in prediction.error
    assert (prediction.output_reruns, prediction.dispatch_attempts) == (1, 2)
    assert len(opened) == 2, opened  # one upload per run
    # The reconciler leaves it be: failed, not run a third time.
    time.sleep(settings.DISPATCH_DEADLINE + 0.5)
    reconcile()
    prediction.refresh_from_db()
    assert prediction.status == "failed" and prediction.dispatch_attempts == 2 and len(opened) == 2
    stored_files.assert_intact(prediction)


def test_a_run_again_for_a_lost_output_waits_while_the_disk_is_full(cog_version, alice, monkeypatch):
    # Run at once, the second run would meet the same full disk and fail for good.
    prediction = Prediction.objects.create(
        version=cog_version, owner=alice, input={"prompt": "x"}, status="processing", output_reruns=1
    )
    monkeypatch.setattr(storage, "disk_problem", lambda: "disk full: 0 MB free for var/spool")
    retried = []

    class Held(Exception):
        pass

    def retry(**options):
        retried.append(options)
        raise Held

    def hand_over(version):
        raise RuntimeError("handed over")

    monkeypatch.setattr(tasks.run_prediction, "retry", retry)
    monkeypatch.setattr(tasks.backends, "for_version", hand_over)

    with pytest.raises(Held):
        tasks.run_prediction(prediction.id, 0, True)
    assert retried == [{"args": [prediction.id, 0, True], "countdown": tasks.RERUN_ROOM_WAIT}]

    # After its last wait it goes ahead (and fails cleanly if the disk is still full).
    monkeypatch.setattr(tasks, "RERUN_ROOM_TRIES", 0)
    with pytest.raises(RuntimeError, match="handed over"):
        tasks.run_prediction(prediction.id, 0, True)
