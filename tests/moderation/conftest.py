"""Fixtures for moderation, limits and safety: versions that need no server
(their availability is settled ahead), people in each role, and predictions
with real stored outputs."""

import io
import json
import os
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone
from PIL import Image

from tests.conftest import COG_PREDICTOR_DIR

SCHEMA = json.loads((COG_PREDICTOR_DIR / ".cog" / "openapi_schema.json").read_text())


@pytest.fixture(autouse=True)
def _broker_folders():
    # Prediction.start publishes to the filesystem broker even when no worker runs.
    for key in ("data_folder_in", "processed_folder"):
        if key in settings.CELERY_BROKER_TRANSPORT_OPTIONS:
            os.makedirs(settings.CELERY_BROKER_TRANSPORT_OPTIONS[key], exist_ok=True)


def _version(owner, name, backend, location, price=None):
    from app.services import catalog

    version = catalog.add_version(owner, name, backend, location, SCHEMA)
    # Settled ahead, so Prediction.start does not ask a server that is not there.
    version.available, version.checked_at = True, timezone.now() + timedelta(days=1)
    version.price_per_second = price
    version.save()
    return version


@pytest.fixture
def version(transactional_db):
    return _version("local", "idle-model", "cog", "http://127.0.0.1:9")


@pytest.fixture
def replicate_version(transactional_db):
    return _version("someone", "paid-model", "replicate", "someone/paid-model:abc", price=Decimal("0.001"))


def _user(name, **extra):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(name, f"{name}@example.com", "correct horse battery", **extra)


@pytest.fixture
def carol(transactional_db):
    return _user("carol")


@pytest.fixture
def dave(transactional_db):
    return _user("dave")


@pytest.fixture
def moderator(transactional_db):
    from django.contrib.auth.models import Group

    from app.core.roles import MODERATORS_GROUP

    user = _user("mod", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name=MODERATORS_GROUP)[0])
    return user


@pytest.fixture
def staff(transactional_db):
    """Staff with every Django permission, but not a moderator."""
    from django.contrib.auth.models import Permission

    user = _user("staffer", is_staff=True)
    user.user_permissions.set(Permission.objects.all())
    return user


def png(color=(200, 30, 30), size=(64, 48)):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def make_prediction(version):
    """A succeeded prediction with stored outputs (rating per output)."""
    from app.models import Prediction
    from app.services import storage

    def make(owner=None, visibility="public", ratings=("safe",), on=None, comparison=None):
        prediction = Prediction.objects.create(
            version=on or version,
            owner=owner,
            visibility=visibility,
            input={"prompt": "a red square", "seed": 1},
            status="succeeded",
            completed_at=timezone.now(),
            comparison=comparison,
        )
        for index, rating in enumerate(ratings):
            storage._save_output(prediction, index, png((index * 40, 30, 30)), "image/png", rating)
        return prediction

    return make


def login(client, user):
    client.force_login(user)
    return client
