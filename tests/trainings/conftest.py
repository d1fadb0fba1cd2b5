"""Fine-tuning through the real pieces: a Cog server in train mode running the
test trainer (tests/cog_trainer/trainer), a Cog server running the base model
that loads LoRAs (tests/cog_trainer/predict.py), the live site and a worker."""

import io
import sys
import zipfile

import pytest
from PIL import Image

from tests.conftest import ROOT, CogServer

TRAINER_DIR = ROOT / "tests" / "cog_trainer"


class TrainServer(CogServer):
    """A real Cog HTTP server in train mode (`--x-mode train`)."""

    name = "Cog trainer"

    def command(self):
        return [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1", "--x-mode", "train"]

    def environment(self):
        return {"PORT": str(self.port), "COG_TRAIN_TYPE_STUB": "train.py:train"}


@pytest.fixture(scope="session")
def base_server(site):
    server = CogServer(TRAINER_DIR).uploading().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def trainer(site, tmp_path_factory):
    run_log = tmp_path_factory.mktemp("trainer") / "runs.txt"
    server = TrainServer(TRAINER_DIR / "trainer", env={"TEST_TRAINER_RUN_LOG": str(run_log)}).start()
    server.run_log = run_log
    yield server
    server.stop()


@pytest.fixture
def base_version(transactional_db, base_server, trainer):
    """A local model whose version trains on `trainer` (its trainer_location)."""
    from app.services import catalog

    version = catalog.import_version(base_server.url, "local/tiny-base")
    version.trainer_location = trainer.url
    version.save(update_fields=["trainer_location"])
    catalog.refresh_availability(version, max_age=0)
    return version


@pytest.fixture
def destination(alice):
    from app.models import Model

    return Model.objects.create(owner="alice", name="my-face", user=alice, visibility="private")


def png(color, size=(32, 32)):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def image_zip(count=4, extra=()):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(count):
            archive.writestr(f"photos/{index}.png", png((40 * index, 90, 200 - 30 * index)))
        for name, data in extra:
            archive.writestr(name, data)
    return buffer.getvalue()


def data_uri(data, media_type="application/zip"):
    import base64

    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


@pytest.fixture
def queued_trainings(monkeypatch):
    """Trainings a test starts are recorded instead of sent to the broker."""
    from tasks.trainings import run_training

    ids = []
    monkeypatch.setattr(run_training, "delay", ids.append)
    return ids
