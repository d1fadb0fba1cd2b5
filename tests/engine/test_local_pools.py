"""LIGHTBOX_LOCAL_MODELS="tiny-sd*3": `make run` starts three tiny-sd servers
(ports + 10 each) and the catalog serves local/tiny-sd from that pool."""

import io

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError

from app.models import Version
from app.services import catalog, pools
from lightbox.settings import local_pools
from tests.conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_setting_names_models_and_how_many_servers_each():
    assert local_pools("") == {"tiny-sd": 1, "tiny-sdxl": 1}
    assert local_pools("tiny-sd*3 sd-turbo,sdxl*2") == {"tiny-sd": 3, "tiny-sdxl": 1, "sd-turbo": 1, "sdxl": 2}
    for bad in ("tiny-sd*0", "tiny-sd*11", "tiny-sd*x", "tiny-sd*"):
        with pytest.raises(ImproperlyConfigured, match="NAME\\*N"):
            local_pools(bad)


def test_make_run_starts_every_server_of_a_pool_on_its_own_port(settings):
    settings.LOCAL_POOLS = local_pools("tiny-sd*3 sd-turbo")
    out = io.StringIO()

    call_command("local_procfile", stdout=out)

    assert out.getvalue().splitlines() == [
        "tiny-sd-2: python manage.py serve_model tiny-sd --instance 2",
        "tiny-sd-3: python manage.py serve_model tiny-sd --instance 3",
        "sd-turbo: python manage.py serve_model sd-turbo --instance 1",
    ]
    assert [catalog.local_port("tiny-sd", index) for index in range(3)] == [5101, 5111, 5121]


def test_an_unknown_local_model_is_refused_by_name(settings):
    settings.LOCAL_POOLS = local_pools("tiny-sd*2 dall-e")

    with pytest.raises(CommandError, match="no local model dall-e"):
        call_command("local_procfile", stdout=io.StringIO())


def test_the_catalog_serves_a_local_model_from_its_pool(settings):
    # Nothing listens there (the suite's servers bind 127.0.0.1): the versions
    # are catalogued as unavailable.
    settings.COG_HOST, settings.COG_BASE_PORT = "127.0.0.3", free_port()
    settings.LOCAL_POOLS = local_pools("tiny-sd*3")

    catalog.load_default()

    tiny_sd = Version.objects.get(model__owner="local", model__name="tiny-sd")
    base = settings.COG_BASE_PORT
    assert sorted(tiny_sd.instances.values_list("url", flat=True)) == [
        f"http://127.0.0.3:{base + 1}",
        f"http://127.0.0.3:{base + 11}",
        f"http://127.0.0.3:{base + 21}",
    ]
    assert pools.is_pooled(tiny_sd)
    tiny_sdxl = Version.objects.get(model__owner="local", model__name="tiny-sdxl")
    assert not pools.is_pooled(tiny_sdxl)  # one server: its own location, as before pools

    settings.LOCAL_POOLS = local_pools("")
    catalog.load_default()
    assert not tiny_sd.instances.exists()

    settings.LOCAL_POOLS = local_pools("tiny-sd*2")
    catalog.load_default()
    assert catalog.refresh_availability(tiny_sd, max_age=0) is False
    tiny_sd.refresh_from_db()
    assert tiny_sd.unavailable_reason.startswith("No instance of the pool is up")
