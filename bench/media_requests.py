"""What one media request costs: a stored image fetched by its session URL
(/media/...) and by a signed URL (/files/...), each checked against who may
see it now (issue 9, item 4: a signed URL is served only while the user it was
issued to may still see the image).

    .venv/bin/python bench/media_requests.py                  # 2,000 requests per case
    .venv/bin/python bench/media_requests.py --requests 500 --json var/bench/media.json

In-process, with Django's test client (no network, no web server: the figure
is Django's own time for the request, middleware included) on a fresh SQLite
database under --var-dir. The images are --size PNGs (64x64 by default, so
that the figure is the request and its checks, not reading the file), read
to the end. The
URLs come from the pages and from GET /v1/predictions/{id}, so the same script
measures an older checkout (README.md, "Before" figures).
"""

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per case")
    parser.add_argument("--size", type=int, default=64, help="image width and height")
    parser.add_argument("--var-dir", default=str(ROOT / "var" / "bench" / "media"))
    parser.add_argument("--json", help="also write the results to this file")
    return parser.parse_args()


def setup_django(var_dir):
    shutil.rmtree(var_dir, ignore_errors=True)
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "MEDIA_ROOT", "AWS_STORAGE_BUCKET_NAME"):
        os.environ.pop(name, None)
    os.environ["LIGHTBOX_VAR_DIR"] = var_dir
    os.environ["DJANGO_SETTINGS_MODULE"] = "lightbox.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    setup_test_environment()  # the test client's host is allowed
    call_command("migrate", verbosity=0)


def png(size):
    from PIL import Image

    buffer = io.BytesIO()
    Image.effect_noise((size, size), 64).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def cases(size):
    """{case: (client, url)}: who asks, for what."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from app.models import ApiToken, ContentPreference, Prediction
    from app.services import catalog, storage

    version = catalog.add_version("local", "bench", "cog", "http://127.0.0.1:9", {})
    alice, bob, carol = (get_user_model().objects.create_user(name) for name in ("alice", "bob", "carol"))
    ContentPreference.objects.create(user=carol, show_nsfw=True)
    data = png(size)

    def made(visibility, rating="safe"):
        prediction = Prediction.objects.create(
            version=version,
            owner=alice,
            visibility=visibility,
            status="succeeded",
            input={"prompt": "noise", "seed": 1},
            completed_at=timezone.now(),
        )
        storage._save_output(prediction, 0, data, "image/png", rating)
        return prediction

    def api_url(user, prediction):
        headers = {"Authorization": f"Bearer {ApiToken.issue(user)[1]}"}
        output = Client().get(f"/v1/predictions/{prediction.id}", headers=headers).json()["output"][0]
        return output.removeprefix("http://testserver")

    public, private, nsfw = made("public"), made("private"), made("public", "nsfw")
    owner = Client()
    owner.force_login(alice)
    return {
        "session, anonymous, public image": (Client(), public.outputs.get().file.url),
        "session, owner, private image": (owner, private.outputs.get().file.url),
        "signed, owner's API client, private image": (Client(), api_url(alice, private)),
        "signed, another user's API client, public image": (Client(), api_url(bob, public)),
        "signed, another user's API client, nsfw image": (Client(), api_url(bob, nsfw)),
        "signed, an opted-in user's API client, nsfw image": (Client(), api_url(carol, nsfw)),
    }


def measure(client, url, requests):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(20):
        b"".join(client.get(url).streaming_content)  # warm up
    times, cpu = [], []
    with CaptureQueriesContext(connection) as queries:
        for _ in range(requests):
            started, started_cpu = time.perf_counter(), time.thread_time()
            response = client.get(url)
            body = b"".join(response.streaming_content)
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.thread_time() - started_cpu) * 1000)
    assert response.status_code == 200 and body, (url, response.status_code)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 3),
        "p95_ms": round(times[int(len(times) * 0.95)], 3),
        # CPU time is the steadier figure on a busy machine.
        "cpu_ms": round(statistics.median(cpu), 3),
        "requests_per_s": round(1000 / statistics.mean(times)),
        "queries": round(len(queries) / requests, 2),
    }


def main():
    args = parse_args()
    setup_django(args.var_dir)
    results = {name: measure(client, url, args.requests) for name, (client, url) in cases(args.size).items()}
    width = max(map(len, results))
    print(f"{'case':<{width}}  {'p50 ms':>7}  {'p95 ms':>7}  {'CPU ms':>7}  {'req/s':>6}  {'queries':>7}")
    for name, figures in results.items():
        print(
            f"{name:<{width}}  {figures['p50_ms']:>7.3f}  {figures['p95_ms']:>7.3f}  {figures['cpu_ms']:>7.3f}  "
            f"{figures['requests_per_s']:>6}  {figures['queries']:>7}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
