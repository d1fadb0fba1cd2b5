"""How fast the web pages are with a big gallery: 100,000 predictions in
PostgreSQL whose outputs are 1024x1024 images, behind gunicorn on this machine.

    .venv/bin/python bench/web_pages.py                    # 100,000 predictions
    .venv/bin/python bench/web_pages.py --predictions 5000 --requests 50

It makes (once) a database `lightbox_web_pages` (its own: other benchmarks
use other databases) on the PostgreSQL at --database-url,
fills it with predictions that all point at one stored 1024x1024 PNG and its
WebP thumbnail (the pages never open the files; the transfer test downloads
the thumbnails), starts gunicorn as the Procfile does with
LIGHTBOX_SERVER_TIMING on, and asks each page --requests times, one at a time.

It reports for each page the server time (the Server-Timing header: the whole
request inside Django, middleware included), the time the client saw, and the
SQL queries per request; then what a first visit to the gallery transfers: the
HTML, the stylesheet, the scripts and 24 thumbnails.

Targets (issue 4): gallery p50 <= 25 ms server time with <= 8 queries; the
gallery page with its 24 thumbnails under 600 KB.

The thumbnails are made by app.core.images.thumbnail from a 1024x1024 image with
the detail of a photograph (fractal noise, not flat colour and not white
noise): real model outputs vary, so the transfer figure is an estimate.
"""

import argparse
import gzip
import io
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = (
    "fox heron lighthouse harbour castle forest city street portrait astronaut robot dragon garden river "
    "mountain desert ocean storm sunset dawn night neon watercolour oil painting photograph cinematic misty "
    "golden snowy rainy ancient futuristic quiet busy tiny giant red blue green violet amber silver"
).split()
PAGE_SIZE = 24


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/lightbox_web_pages"),
    )
    parser.add_argument("--predictions", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200, help="requests per page")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--json", help="also write the results to this file")
    return parser.parse_args()


def ensure_database(url):
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            connection.execute(f'CREATE DATABASE "{name}"')


def setup_django(args):
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("LIGHTBOX_VAR_DIR", str(ROOT / "var" / "bench"))
    os.environ.setdefault("MEDIA_ROOT", str(ROOT / "var" / "bench" / "media"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lightbox.settings")
    os.environ.setdefault("LIGHTBOX_SECRET_KEY_CREATE", "1")  # a key of its own in var/bench
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("collectstatic", verbosity=0, interactive=False)


def photo_like_png(size=1024, seed=7):
    """A PNG with detail at every scale, like a photograph or a model's output."""
    from PIL import Image, ImageFilter

    random.seed(seed)
    channels = []
    for channel in range(3):
        layer = Image.new("L", (size, size), 128)
        for octave, weight in ((4, 0.45), (16, 0.25), (64, 0.15), (256, 0.1), (1024, 0.05)):
            noise = Image.effect_noise((octave, octave), 64 + 20 * channel).resize((size, size), Image.BICUBIC)
            layer = Image.blend(layer, noise, weight / (weight + 0.5))
        channels.append(layer.filter(ImageFilter.GaussianBlur(0.6)))
    image = Image.merge("RGB", channels)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def populate(count):
    """Predictions (and their outputs, one stored file shared by all) up to `count`."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.utils import timezone

    from app.core import images
    from app.models import Comparison, Output, Prediction
    from app.services import catalog

    have = Prediction.objects.count()
    version = catalog.add_version(
        "local",
        "bench-sdxl",
        "cog",
        "http://127.0.0.1:9/bench",
        {
            "components": {
                "schemas": {
                    "Input": {
                        "type": "object",
                        "properties": {"prompt": {"type": "string"}, "seed": {"type": "integer"}},
                    }
                }
            }
        },
    )
    user, _ = get_user_model().objects.get_or_create(username="bench")
    if have >= count:
        return version, user
    png = photo_like_png()
    image_path = "outputs/be/bench/0.png"
    thumb_path = "outputs/be/bench/0.thumb.webp"
    if not default_storage.exists(image_path):
        default_storage.save(image_path, ContentFile(png))
        default_storage.save(thumb_path, ContentFile(images.thumbnail(png)))
    print(
        f"bench: adding {count - have} predictions (image {len(png) // 1024} KB, "
        f"thumbnail {default_storage.size(thumb_path) // 1024} KB)",
        flush=True,
    )
    rng = random.Random(have)
    start = timezone.now() - timedelta(days=365)
    step = timedelta(days=365) / count
    batch = 5000
    for offset in range(have, count, batch):
        rows = []
        for index in range(offset, min(count, offset + batch)):
            status = "succeeded" if rng.random() < 0.93 else rng.choice(["failed", "canceled"])
            created = start + step * index
            rows.append(
                Prediction(
                    version=version,
                    owner=user,
                    status=status,
                    source="web",
                    visibility="public" if rng.random() < 0.7 else rng.choice(["unlisted", "private"]),
                    input={
                        "prompt": " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))),
                        "seed": rng.randrange(2**32),
                        "width": 1024,
                        "height": 1024,
                    },
                    logs="step 30/30\n",
                    created_at=created,
                    started_at=created,
                    completed_at=created + timedelta(seconds=3),
                    predict_time=rng.uniform(1.5, 4.0),
                )
            )
        Prediction.objects.bulk_create(rows, batch_size=1000)
        Output.objects.bulk_create(
            [
                Output(
                    prediction=p,
                    index=0,
                    file=image_path,
                    thumbnail=thumb_path,
                    width=1024,
                    height=1024,
                    sha256="0" * 64,
                )
                for p in rows
                if p.status == "succeeded"
            ],
            batch_size=1000,
        )
        print(f"bench: {min(count, offset + batch)} predictions", flush=True)
    if not Comparison.objects.exists():
        comparison = Comparison.objects.create(
            owner=user, input={"prompt": "a bench comparison"}, seed=1, visibility="public"
        )
        Prediction.objects.filter(
            pk__in=list(Prediction.objects.filter(status="succeeded").values_list("pk", flat=True)[:4])
        ).update(comparison=comparison)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return version, user


def start_gunicorn(port):
    env = {**os.environ, "LIGHTBOX_SERVER_TIMING": "1", "ALLOWED_HOSTS": "127.0.0.1,localhost"}
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "lightbox.asgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            "lightbox.webserver.Worker",
            "--workers",
            "2",
            "--timeout",
            "90",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            # Not /healthz: it fails while no beat runs, as in this benchmark.
            if httpx.get(f"http://127.0.0.1:{port}/v1/openapi.json", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.terminate()
    raise SystemExit("gunicorn did not start")


SERVER_TIMING_RE = re.compile(r'app;dur=([\d.]+), db;desc="(\d+) queries"')


def measure(client, url, requests):
    server, seen, queries, size = [], [], set(), 0
    for _ in range(3):
        client.get(url)  # warm up
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(url)
        seen.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
        match = SERVER_TIMING_RE.search(response.headers.get("server-timing", ""))
        server.append(float(match.group(1)))
        queries.add(int(match.group(2)))
        size = len(response.content)
    return {
        "url": url,
        "server_p50_ms": round(statistics.median(server), 2),
        "server_p95_ms": round(statistics.quantiles(server, n=20)[-1], 2),
        "client_p50_ms": round(statistics.median(seen), 2),
        "queries": sorted(queries),
        "html_bytes": size,
    }


def transfer(client, url):
    """Bytes of a first visit: the HTML (gzip, as a browser asks), its CSS and
    scripts (whitenoise serves them compressed), and the thumbnails it shows."""
    page = client.get(url, headers={"Accept-Encoding": "gzip"})
    html = page.text
    total = {
        "html": len(gzip.compress(page.content))
        if page.headers.get("content-encoding") != "gzip"
        else int(page.headers.get("content-length", len(page.content)))
    }
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', html)
    total["css_js"] = 0
    for asset in set(assets):
        response = client.get(asset, headers={"Accept-Encoding": "gzip, br"})
        total["css_js"] += int(response.headers.get("content-length") or len(response.content))
    thumbs = re.findall(r'<img src="([^"]+\.webp)"', html)
    total["thumbnails"] = sum(len(client.get(thumb).content) for thumb in thumbs)
    total["thumbnail_count"] = len(thumbs)
    total["total_kb"] = round((total["html"] + total["css_js"] + total["thumbnails"]) / 1024, 1)
    return total


def main():
    args = parse_args()
    ensure_database(args.database_url)
    setup_django(args)
    _, user = populate(args.predictions)
    from app.models import Comparison, Prediction

    deep = Prediction.objects.public().filter(status="succeeded").order_by("-created_at")[args.predictions // 2]
    from app.core import pagination

    cursor = pagination.encode("next", deep)
    prediction = Prediction.objects.public().filter(status="succeeded").first()
    comparison = Comparison.objects.first()
    process = start_gunicorn(args.port)
    import httpx

    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=30) as client:
            pages = {
                "gallery": "/gallery",
                "gallery, deep page": f"/gallery?cursor={cursor}",
                "gallery, search": "/gallery?q=lighthouse",
                "gallery, by model": "/gallery?model=local/bench-sdxl",
                "prediction": f"/p/{prediction.id}",
                "comparison": f"/c/{comparison.id}",
            }
            results = {name: measure(client, url, args.requests) for name, url in pages.items()}
            results["gallery transfer"] = transfer(client, "/gallery")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
    print(f"\n{args.predictions} predictions, {args.requests} requests per page, one at a time")
    print(f"{'page':<22}{'server p50':>12}{'server p95':>12}{'client p50':>12}{'queries':>10}")
    for name, row in results.items():
        if "url" in row:
            print(
                f"{name:<22}{row['server_p50_ms']:>10.1f}ms{row['server_p95_ms']:>10.1f}ms"
                f"{row['client_p50_ms']:>10.1f}ms{','.join(map(str, row['queries'])):>10}"
            )
    t = results["gallery transfer"]
    print(
        f"\ngallery first visit: {t['total_kb']} KB = HTML {t['html'] // 1024} KB + CSS/JS {t['css_js'] // 1024} KB"
        f" + {t['thumbnail_count']} thumbnails {t['thumbnails'] // 1024} KB"
    )
    gallery = results["gallery"]
    print(
        f"targets: gallery p50 {gallery['server_p50_ms']} ms <= 25: {gallery['server_p50_ms'] <= 25}; "
        f"queries {max(gallery['queries'])} <= 8: {max(gallery['queries']) <= 8}; "
        f"transfer {t['total_kb']} KB < 600: {t['total_kb'] < 600}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
