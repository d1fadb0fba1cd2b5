"""The playground's grid block and the grid page, through the test client."""

import io
import json
import re
import zipfile

import pytest
from django.utils import timezone
from PIL import Image

from app.models import Comparison, Grid, Output, Prediction
from app.services import grids, storage
from tests.web.conftest import png_bytes

STEPS = {"kind": "field", "field": "num_inference_steps", "text": "1-4 [4]"}


@pytest.fixture(autouse=True)
def _recorded(queued, grid_tasks, settings):
    # Grids of 100 cells start at once here (pacing: test_service.py).
    settings.MAX_CONCURRENT = settings.RATE_LIMIT_PER_MINUTE = None
    return queued


def form(version, **axes):
    data = {"version": [version.id], "prompt": "a red fox", "width": "64", "height": "64"}
    data.update(axes)
    return data


def finish(grid):
    """Every started cell succeeded with one stored image."""
    grids.materialise(grid.pk)
    for index, prediction in enumerate(Prediction.objects.filter(comparison__grid=grid).order_by("created_at")):
        storage._save_output(prediction, 0, png_bytes(color=(index * 20 % 255, 90, 160)), "image/png")
        Prediction.objects.filter(pk=prediction.pk).update(
            status="succeeded", completed_at=timezone.now(), predict_time=1.0
        )


def test_the_preview_counts_cells_and_says_the_cap(client_alice, sd_version, settings):
    response = client_alice.post(
        "/g/preview", form(sd_version, axis_x_kind="field:num_inference_steps", axis_x_text="1-4 [4]")
    )
    assert response.status_code == 200
    assert "4 cells" in response.content.decode()
    settings.GRID_MAX_CELLS = 3
    refused = client_alice.post(
        "/g/preview",
        form(sd_version, axis_x_kind="field:num_inference_steps", axis_x_text="1-4 [4]"),
        headers={"HX-Request": "true", "HX-Target": "grid-preview"},
    )
    body = refused.content.decode()
    assert "Refused: a grid has at most 3 cells" in body and "<html" not in body


def test_starting_a_grid_without_javascript(client_alice, sd_version, grid_tasks):
    response = client_alice.post(
        "/g/new",
        form(
            sd_version,
            axis_x_kind="field:num_inference_steps",
            axis_x_text="1, 2",
            axis_y_kind="field:scheduler",
            axis_y_text="all",
        ),
    )
    grid = Grid.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/g/{grid.pk}"
    assert grid_tasks == [grid.pk] and grid.planned == 6


def test_a_bad_axis_shows_its_message_next_to_it_and_starts_nothing(client_alice, sd_version):
    response = client_alice.post(
        "/g/new", form(sd_version, axis_x_kind="field:guidance_scale", axis_x_text="7, 99 <script>")
    )
    body = response.content.decode()
    assert response.status_code == 400
    assert 'id="axis-x-error"' in body and "is not a number" in body and "<script>" not in body
    assert not Grid.objects.exists()
    response = client_alice.post("/g/new", form(sd_version, axis_x_kind="field:nope", axis_x_text="1"))
    assert "Unknown field" in response.content.decode() and not Grid.objects.exists()


def test_the_grid_page_fills_in_and_its_query_count_does_not_grow(
    client_alice, alice, sd_version, django_assert_max_num_queries
):
    small = grids.create(alice, [sd_version], {"prompt": "a fox"}, [STEPS, {"kind": "seed", "text": "1, 2"}])
    finish(small)
    big = grids.create(
        alice, [sd_version], {"prompt": "a fox"}, [{**STEPS, "text": "1-10"}, {"kind": "seed", "text": "1-10"}]
    )
    finish(big)
    with django_assert_max_num_queries(12) as small_queries:
        page = client_alice.get(f"/g/{small.pk}")
    with django_assert_max_num_queries(12) as big_queries:
        big_page = client_alice.get(f"/g/{big.pk}")
    assert len(small_queries.captured_queries) == len(big_queries.captured_queries)
    body = big_page.content.decode()
    assert body.count('class="grid-cell"') == 100 and body.count("<img") >= 100
    assert len(picker_options(body, "a")) == 100  # the compare picker adds no query per cell
    assert "100 of 100 done" in body and 'id="grid-poll"' not in body
    assert page.status_code == 200


def test_a_visitor_gets_nsfw_cells_blurred_and_notes_for_hidden_and_removed_ones(
    client, alice, bob, sd_version, django_assert_max_num_queries
):
    grid = grids.create(
        alice, [sd_version], {"prompt": "a fox"}, [{**STEPS, "text": "1-3"}, {"kind": "seed", "text": "1, 2"}]
    )
    finish(grid)
    nsfw, other_nsfw, hidden, removed, *_ = Prediction.objects.filter(comparison__grid=grid).order_by("created_at")
    client.force_login(bob)
    storage.mark_nsfw(nsfw.outputs.get())
    with django_assert_max_num_queries(20) as one_nsfw_queries:
        assert client.get(f"/g/{grid.pk}").status_code == 200
    storage.mark_nsfw(other_nsfw.outputs.get())
    hidden.hide("spam")
    removed.outputs.get().block()
    output = nsfw.outputs.get()

    with django_assert_max_num_queries(20) as queries:
        body = client.get(f"/g/{grid.pk}").content.decode()
    assert len(queries.captured_queries) == len(one_nsfw_queries.captured_queries)  # not one per nsfw cell
    assert output.blurred_thumbnail.url in body and output.thumbnail.url not in body
    assert body.count('alt="Rated NSFW. a fox"') == 2
    assert "Hidden by moderators" in body and "Removed by moderators" in body
    assert body.count("<img") == 4  # 6 cells: one hidden, one removed

    client.force_login(alice)  # the owner sees her own images as they are
    own = client.get(f"/g/{grid.pk}").content.decode()
    assert output.thumbnail.url in own and output.blurred_thumbnail.url not in own
    assert own.count("<img") == 5 and "Hidden by moderators" not in own


def test_one_poll_sends_the_cells_changed_since_its_cursor(client_alice, alice, sd_version):
    grid = grids.create(alice, [sd_version], {"prompt": "a fox"}, [STEPS])
    grids.materialise(grid.pk)
    page = client_alice.get(f"/g/{grid.pk}").content.decode()
    assert page.count('id="grid-poll"') == 1 and "every 2s" in page
    cursor = timezone.now()
    one = Prediction.objects.filter(comparison__grid=grid).first()
    storage._save_output(one, 0, png_bytes(), "image/png")
    Prediction.objects.filter(pk=one.pk).update(status="succeeded", completed_at=timezone.now())
    response = client_alice.get(f"/g/{grid.pk}/changes", {"since": cursor.isoformat()}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert body.count('hx-swap-oob="true"') == 2  # the changed cell and the progress line
    assert "1 of 4 done" in body and 'id="grid-poll"' in body
    Prediction.objects.filter(comparison__grid=grid).update(status="succeeded", completed_at=timezone.now())
    done = client_alice.get(f"/g/{grid.pk}/changes", {"since": cursor.isoformat()}, headers={"HX-Request": "true"})
    assert done.status_code == 286 and 'id="grid-poll"' not in done.content.decode()


def test_swap_hide_pages_and_not_applicable_cells(client_alice, alice, sd_version, turbo_version):
    grid = grids.create(
        alice,
        [sd_version, turbo_version],
        {"prompt": "a fox"},
        [{"kind": "field", "field": "scheduler", "text": "DDIM, PNDM"}, {"kind": "version"}, STEPS],
    )
    finish(grid)
    body = client_alice.get(f"/g/{grid.pk}").content.decode()
    assert "n/a: " in body and "sd-turbo has no input scheduler" in body
    assert len(re.findall('class="grid-tab[ "]', body)) == 4 and 'aria-current="page"' in body
    swapped = client_alice.get(f"/g/{grid.pk}?swap=1&z=2&hide_c=1").content.decode()
    assert swapped.count('scope="col" class="grid-col-label"') == 1  # 2 models, one hidden
    assert swapped.count('scope="row" class="grid-row-label"') == 2  # 2 schedulers
    hostile = client_alice.get(f"/g/{grid.pk}?z=999999999&hide_c=x,-1,9999&size=<b>")
    assert hostile.status_code == 200


def test_other_users_see_a_shared_grid_and_not_a_private_one(client, bob, alice, sd_version):
    grid = grids.create(alice, [sd_version], {"prompt": "a fox"}, [STEPS])
    client.force_login(bob)
    assert client.get(f"/g/{grid.pk}").status_code == 200  # unlisted: the link opens it
    assert client.post(f"/g/{grid.pk}/cancel").status_code == 404
    grids.set_visibility(grid, "private")
    assert client.get(f"/g/{grid.pk}").status_code == 404
    assert client.get(f"/g/{grid.pk}/grid.zip").status_code == 404


def test_exports_a_labelled_png_and_a_zip_with_a_manifest(client_alice, alice, sd_version):
    grid = grids.create(alice, [sd_version], {"prompt": "a fox"}, [STEPS, {"kind": "seed", "text": "5, 6"}])
    finish(grid)
    png = client_alice.get(f"/g/{grid.pk}/grid.png")
    assert png["Content-Type"] == "image/png"
    with Image.open(io.BytesIO(png.content)) as image:
        assert image.width > 4 * 96 and image.height > 2 * 96
    archive = zipfile.ZipFile(io.BytesIO(client_alice.get(f"/g/{grid.pk}/grid.zip").content))
    manifest = json.loads(archive.read("manifest.json"))
    assert [axis["name"] for axis in manifest["axes"]] == ["X", "Y"]
    assert len(manifest["cells"]) == 8 and {cell["seed"] for cell in manifest["cells"]} == {5, 6}
    for cell in manifest["cells"]:
        assert cell["files"] and all(name in archive.namelist() for name in cell["files"])


def test_og_image_only_for_a_grid_open_to_everyone(client, alice, sd_version):
    grid = grids.create(alice, [sd_version], {"prompt": "a fox"}, [STEPS], visibility="public")
    finish(grid)
    page = client.get(f"/g/{grid.pk}").content.decode()
    assert f'<meta property="og:image" content="http://testserver/g/{grid.pk}/preview.jpg">' in page
    assert f'<meta name="twitter:image" content="http://testserver/g/{grid.pk}/preview.jpg">' in page
    assert '<meta property="og:title" content="Grid: a fox">' in page
    assert '<meta property="og:description" content="4 cells · 4 num inference steps · on Lightbox">' in page
    assert f'<meta property="og:url" content="http://testserver/g/{grid.pk}">' in page
    preview = client.get(f"/g/{grid.pk}/preview.jpg")
    assert preview["Content-Type"] == "image/jpeg"
    grids.set_visibility(grid, "private")
    assert client.get(f"/g/{grid.pk}/preview.jpg").status_code == 404
    client.force_login(alice)
    private = client.get(f"/g/{grid.pk}").content.decode()
    assert "og:" not in private and '<meta name="robots" content="noindex">' in private


def test_cancel_and_rerun_from_the_page(client_alice, alice, sd_version, grid_tasks):
    grid = grids.create(alice, [sd_version], {"prompt": "a fox"}, [STEPS])
    grids.materialise(grid.pk)
    assert 'action="/g/' + grid.pk + '/cancel"' in client_alice.get(f"/g/{grid.pk}").content.decode()
    client_alice.post(f"/g/{grid.pk}/cancel")
    assert Prediction.objects.filter(comparison__grid=grid, status="canceled").count() == 4
    response = client_alice.post(f"/g/{grid.pk}/rerun")
    again = Grid.objects.exclude(pk=grid.pk).get()
    assert response["Location"] == f"/g/{again.pk}" and again.seed != grid.seed
    assert Comparison.objects.standalone().count() == 0


def picker_options(body, field):
    """(value, label) of each option of the grid's compare picker's `field` ("a" or "b")."""
    select = re.search(rf'<select name="{field}" id="grid-compare-{field}">(.*?)</select>', body, re.S)
    assert select, f"no picker field {field}"
    return re.findall(r'<option value="([^"]+)"[^>]*>([^<]*)</option>', select.group(1))


def test_the_compare_picker_offers_the_shown_cells_by_their_axis_values(client_alice, alice, sd_version):
    grid = grids.create(alice, [sd_version], {"prompt": "a fox"}, [STEPS, {"kind": "seed", "text": "7, 8"}])
    finish(grid)
    cell = {
        (p.comparison.grid_x, p.comparison.grid_y): p
        for p in Prediction.objects.filter(comparison__grid=grid).select_related("comparison")
    }
    Output.objects.filter(prediction=cell[2, 1]).update(rating=Output.Rating.BLOCKED)
    body = client_alice.get(f"/g/{grid.pk}").content.decode()
    assert '<label for="grid-compare-a">' in body and '<label for="grid-compare-b">' in body
    options = picker_options(body, "a")
    assert options == picker_options(body, "b")
    # Row by row, as the table shows them; the removed image is not offered.
    assert options == [
        (f"{cell[0, 0].pk}:0", "num inference steps = 1, Seed = 7"),
        (f"{cell[1, 0].pk}:0", "num inference steps = 2, Seed = 7"),
        (f"{cell[2, 0].pk}:0", "num inference steps = 3, Seed = 7"),
        (f"{cell[3, 0].pk}:0", "num inference steps = 4, Seed = 7"),
        (f"{cell[0, 1].pk}:0", "num inference steps = 1, Seed = 8"),
        (f"{cell[1, 1].pk}:0", "num inference steps = 2, Seed = 8"),
        (f"{cell[3, 1].pk}:0", "num inference steps = 4, Seed = 8"),
    ]
    # A plain GET form to the viewer, the first two cells chosen at first.
    assert re.search(r'<form method="get" action="/compare"', body)
    assert f'<option value="{cell[1, 0].pk}:0" selected>' in re.search(
        r'id="grid-compare-b">(.*?)</select>', body, re.S
    ).group(1)
    viewer = client_alice.get("/compare", {"a": options[2][0], "b": options[6][0]})
    assert viewer.status_code == 200
    shown = viewer.content.decode()
    assert f'href="/p/{cell[2, 0].pk}"' in shown and f'href="/p/{cell[3, 1].pk}"' in shown
    # Hidden rows' and columns' cells are not offered; swapped axes swap the labels.
    narrowed = picker_options(client_alice.get(f"/g/{grid.pk}?swap=1&hide_c=0&hide_r=0").content.decode(), "a")
    assert narrowed == [
        (f"{cell[1, 1].pk}:0", "Seed = 8, num inference steps = 2"),
        (f"{cell[3, 1].pk}:0", "Seed = 8, num inference steps = 4"),
    ]


def test_the_grid_s_last_poll_brings_the_picker_its_cells(client_alice, alice, sd_version):
    grid = grids.create(alice, [sd_version], {"prompt": "a fox"}, [STEPS])
    grids.materialise(grid.pk)
    page = client_alice.get(f"/g/{grid.pk}").content.decode()
    assert '<div id="grid-compare">' in page and "grid-compare-a" not in page  # nothing done yet
    cursor = timezone.now()
    finish(grid)
    done = client_alice.get(f"/g/{grid.pk}/changes", {"since": cursor.isoformat()}, headers={"HX-Request": "true"})
    body = done.content.decode()
    assert done.status_code == 286
    assert 'id="grid-compare" class="compare-bar grid-compare" hx-swap-oob="true"' in body
    assert len(picker_options(body, "a")) == 4
