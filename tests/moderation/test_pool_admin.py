"""The admin shows each pool's instances, a down one with the reason, and
whether a deployment has its min_instances up; admins register instance URLs."""

import pytest
from django.test import Client

from app.models import Deployment, Instance
from app.services import pools
from tests.conftest import free_port
from tests.moderation.conftest import login

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_down_instance_is_listed_with_the_reason(staff, version, alice):
    dead = f"http://127.0.0.1:{free_port()}"
    pools.set_instances(version, [dead, "http://127.0.0.1:9"])
    for instance in version.instances.all():
        pools.check(instance)
    Deployment.objects.create(owner=alice, name="painter", version=version, min_instances=1, max_instances=2)
    client = login(Client(), staff)

    instances = client.get("/admin/app/instance/")
    deployments = client.get("/admin/app/deployment/")

    assert instances.status_code == 200
    assert f"The model server at {dead} does not answer (could not connect)." in instances.content.decode()
    assert "0 / 2 up — fewer than min_instances" in deployments.content.decode()


def test_an_admin_adds_an_instance_url_to_a_version(staff, version):
    client = login(Client(), staff)
    url = f"/admin/app/version/{version.pk}/change/"
    form = {
        "price_per_second": "",
        "timeout": "600",
        "instances-TOTAL_FORMS": "1",
        "instances-INITIAL_FORMS": "0",
        "instances-MIN_NUM_FORMS": "0",
        "instances-MAX_NUM_FORMS": "1000",
        "instances-0-url": "http://10.0.0.5:5000",
        "instances-0-version": version.pk,
    }

    response = client.post(url, form)

    assert response.status_code == 302, response.content.decode()[-2000:]
    assert list(Instance.objects.values_list("url", "up")) == [("http://10.0.0.5:5000", True)]
    assert pools.is_pooled(version)
