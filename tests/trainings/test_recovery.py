"""Trainings keep the predictions' recovery guarantees: a worker killed
mid-training, a lost completed webhook and a restarted trainer all end in a
terminal state, with the weights and the new version kept."""

import os
import signal

import pytest

from tasks.reconciler import reconcile
from tests.conftest import Worker, wait_until
from tests.engine.broken_cog import WebhookDroppingProxy
from tests.trainings.conftest import TRAINER_DIR, TrainServer, image_zip

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _start(version, destination, alice, **given):
    from app.services import trainings

    return trainings.start(
        version, destination, {"max_train_steps": 6, **given}, owner=alice, files_given=[("photos.zip", image_zip(3))]
    )


def reconcile_until_ended(training_id, timeout=60):
    from app.models import Training

    def ended():
        reconcile()
        training = Training.objects.get(pk=training_id)
        return training if training.is_terminal else None

    return wait_until(ended, timeout=timeout, interval=0.5, message=f"training {training_id} to end")


def test_a_worker_killed_mid_training_loses_nothing(worker, base_version, destination, alice):
    from app.models import Training

    training = _start(base_version, destination, alice, step_delay=0.4)
    wait_until(lambda: "step 1/6" in Training.objects.get(pk=training.pk).logs, message="the first step")
    worker.kill()
    # The trainer goes on; its progress comes by webhook to the web process.
    wait_until(lambda: "step 6/6" in Training.objects.get(pk=training.pk).logs, timeout=30, message="the last step")
    fresh = Worker(worker.env).start()  # as a supervisor would
    worker.process, worker.log_path = fresh.process, fresh.log_path
    training = reconcile_until_ended(training.id)
    assert training.status == "succeeded", training.error
    assert training.dispatch_attempts == 1
    assert training.new_version.weights.size > 8


@pytest.fixture
def lossy_trainer(site):
    server = TrainServer(TRAINER_DIR / "trainer")
    with WebhookDroppingProxy(server.url, drop=1) as proxy:
        server.start()
        yield proxy
        server.stop()


def test_a_lost_completed_webhook_still_ends_the_training(
    worker, base_version, destination, alice, lossy_trainer, settings
):
    settings.DISPATCH_DEADLINE = 0.5
    settings.TRAINING_TIMEOUT = 4
    base_version.trainer_location = lossy_trainer.url
    base_version.save(update_fields=["trainer_location"])
    training = _start(base_version, destination, alice, max_train_steps=2)
    wait_until(lambda: lossy_trainer.dropped.get(training.id), timeout=30, message="the completed webhook to be lost")

    training = reconcile_until_ended(training.id)

    # Only after the whole timeout of silence was it sent again: the trainer
    # had forgotten it and trained again.
    assert training.status == "succeeded", training.error
    assert training.dispatch_attempts == 2
    assert training.new_version is not None


@pytest.fixture
def own_trainer(site):
    server = TrainServer(TRAINER_DIR / "trainer").start()
    yield server
    server.stop()


def test_a_trainer_restarted_mid_training_trains_again(worker, base_version, destination, alice, own_trainer, settings):
    from app.models import Training

    settings.DISPATCH_DEADLINE = 0.5
    base_version.trainer_location = own_trainer.url
    base_version.save(update_fields=["trainer_location"])
    training = _start(base_version, destination, alice, step_delay=0.5)
    wait_until(lambda: "step 1/6" in Training.objects.get(pk=training.pk).logs, message="the first step")
    os.killpg(own_trainer.process.pid, signal.SIGKILL)  # no chance to report anything
    own_trainer.start()  # a new run of the server: a new setup.started_at

    training = reconcile_until_ended(training.id)

    assert training.status == "succeeded", training.error
    assert training.dispatch_attempts == 2
