"""Real components for the tests: the database, a live web server, a Celery
worker on the configured broker, a Cog HTTP server running a tiny predictor,
and a stand-in for Replicate's cloud shaped like its documented API."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.environment import OWN_REDIS_PREFIX, OWN_VAR_DIR, VAR_DIR, stale

ROOT = Path(__file__).resolve().parent.parent

COG_PREDICTOR_DIR = ROOT / "tests" / "cog_predictor"
VENV_BIN = Path(sys.executable).parent


def _retry_flush_on_deadlock():
    """Transactional tests end with a TRUNCATE of every table while the shared
    worker (or a webhook from a Cog server) may still be updating a row of the
    test that just ended; PostgreSQL then picks one of the two as a deadlock
    victim. The row's work is moot once the test is over: retry the flush."""
    from django.db.backends.base.operations import BaseDatabaseOperations
    from django.db.utils import OperationalError

    original = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        for attempt in range(5):
            try:
                return original(self, sql_list)
            except OperationalError as exc:
                if "deadlock" not in str(exc) or attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush


_retry_flush_on_deadlock()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout=30.0, interval=0.05, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


class CogServer:
    """A real Cog HTTP server (cog from PyPI) running a predictor directory."""

    name = "Cog server"
    startup_timeout = 60

    def __init__(self, directory, upload_url=None, env=None):
        self.directory = directory
        self.upload_url = upload_url
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None
        self.log_path = VAR_DIR / f"cog-{self.port}.log"

    def uploading(self, location=None):
        """Upload outputs to the live site, with the upload token of the server
        at `location`: the URL its version is imported from (this server's
        own, or a proxy's in front of it)."""
        from app.services import storage

        self.upload_url = storage.upload_url(location or self.url)
        return self

    def command(self):
        command = [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1"]
        return command + (["--upload-url", self.upload_url] if self.upload_url else [])

    def environment(self):
        return {"PORT": str(self.port), "COG_PREDICT_TYPE_STUB": "predict.py:Predictor"}

    def start(self):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.directory,
            env={**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", **self.environment(), **self.env},
            stdout=open(self.log_path, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self.ready, timeout=self.startup_timeout, message=f"{self.name} on {self.url}")
        return self

    def ready(self):
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
        try:
            return httpx.get(self.url + "/health-check", timeout=1).json().get("status") == "READY"
        except (httpx.HTTPError, ValueError):
            return False

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class InferenceServer(CogServer):
    """Our inference server (`python -m inference.serve`, the real Cog HTTP
    server around inference/) on a model folder; `extra` are more of its
    command-line arguments (e.g. `--train`)."""

    name = "inference server"
    startup_timeout = 300  # it imports torch and loads the pipeline first

    def __init__(self, model, *extra, env=None):
        super().__init__(ROOT, env=env)
        self.model = model
        self.extra = extra

    def command(self):
        run_dir = VAR_DIR / f"run-{self.port}"
        command = [sys.executable, "-m", "inference.serve", "--model", str(self.model), "--port", str(self.port)]
        command += ["--run-dir", str(run_dir), *self.extra]
        return command + (["--upload-url", self.upload_url] if self.upload_url else [])

    def environment(self):
        return {"LIGHTBOX_TORCH_THREADS": "1", "HF_HUB_OFFLINE": "1", "LIGHTBOX_WARMUP": ""}


class ProcessGroup:
    """A process the tests start in a session of its own, with its output in
    `log_path`: stopped with SIGTERM (SIGKILL after `grace` seconds), or killed
    at once, as when the machine runs out of memory."""

    grace = 15
    process = None
    log_path = None

    def spawn(self, args, env):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self):
        """SIGKILL the whole group."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(self.grace)
            except subprocess.TimeoutExpired:
                self.kill()


class Worker(ProcessGroup):
    """A real Celery worker process on the configured broker and test database."""

    def __init__(self, env):
        self.env = env
        self.process = None
        self.log_path = VAR_DIR / f"worker-{time.monotonic_ns()}.log"

    def start(self):
        self.spawn(
            [
                str(VENV_BIN / "celery"),
                "-A",
                "lightbox",
                "worker",
                "--concurrency",
                "2",
                "--pool",
                "threads",
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
            ],
            self.env,
        )
        wait_until(lambda: "ready." in self.log_path.read_text(), timeout=60, message="Celery worker")
        return self


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, django_db_blocker):
    """On a database server, a test database of the session's own, named for its
    pid (SQLite's is in the session's folder already); those that killed
    sessions left are dropped."""
    from django.conf import settings
    from django.db import connections

    for alias, db in settings.DATABASES.items():
        if db["ENGINE"].endswith("sqlite3"):
            continue
        test = db.setdefault("TEST", {})
        prefix = f"{test.get('NAME') or 'test_' + db['NAME']}_"
        test["NAME"] = f"{prefix}{os.getpid()}"
        with django_db_blocker.unblock():
            _drop_stale_databases(connections[alias], prefix)


def _drop_stale_databases(connection, prefix):
    from django.db import DatabaseError

    if connection.vendor != "postgresql":
        return
    with connection._nodb_cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database")
        names = [name for (name,) in cursor.fetchall() if name.startswith(prefix) and stale(name[len(prefix) :])]
        for name in names:
            try:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
            except DatabaseError:
                pass  # in use after all: a session on another machine sharing the server


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """pytest-django's, and then, before it drops the test database, the
    connection app.core.waits keeps LISTENing on it is closed."""
    yield
    from app.core import waits

    waits.LISTENER.stop()


class WebServer:
    """The web server the Procfile runs (lightbox.webserver's thread pool under
    uvicorn), in a thread of this process so that it sees the tests' database
    and settings; static and media files are served as by Django's (and
    pytest-django's) live server."""

    def __init__(self, threads=8, results_threads=4):
        import uvicorn
        from django.contrib.staticfiles.handlers import StaticFilesHandler
        from django.core.handlers.wsgi import WSGIHandler
        from django.test.testcases import _MediaFilesHandler

        from lightbox.webserver import UVICORN, ThreadedWSGI, largest_body

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.application = ThreadedWSGI(
            StaticFilesHandler(_MediaFilesHandler(WSGIHandler())),
            threads,
            max_body=largest_body(),
            results_threads=results_threads,
        )
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.application, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", **UVICORN
            )
        )
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self.server.run, name=f"web-{self.port}", daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=30, message=f"web server on {self.url}")
        return self

    def stop(self):
        # Its shutdown closes its threads' database connections (before the
        # test database is dropped).
        self.server.should_exit = True
        self.thread.join(15)


class Gunicorn(ProcessGroup):
    """The web process as the Procfile runs it (gunicorn with lightbox.webserver.Worker),
    on the tests' database, in its own session. Its broker is in memory: the
    predictions it starts are never sent (the session's worker, whose webhooks
    go to `site`, must not take them)."""

    grace = 40

    def __init__(self, env, workers=1, threads=2, results_threads=2):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **env,
            "SITE_URL": self.url,
            "CELERY_BROKER_URL": "memory://",
            "LIGHTBOX_WEB_THREADS": str(threads),
            "LIGHTBOX_RESULTS_THREADS": str(results_threads),
            "LIGHTBOX_RATE_LIMIT_PER_MINUTE": "none",
            "LIGHTBOX_DAILY_QUOTA": "none",
            "LIGHTBOX_MAX_CONCURRENT": "none",
        }
        if env.get("CELERY_BROKER_URL", "").startswith("redis"):
            self.env["REDIS_URL"] = env["CELERY_BROKER_URL"]  # the throttles' cache, as everywhere else
        self.workers = workers
        self.process = None
        self.log_path = VAR_DIR / f"gunicorn-{self.port}.log"

    def start(self):
        self.spawn(
            [
                str(VENV_BIN / "gunicorn"),
                "lightbox.asgi",
                "--worker-class",
                "lightbox.webserver.Worker",
                "--workers",
                str(self.workers),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--timeout",
                "90",
            ],
            self.env,
        )
        wait_until(self.ready, timeout=60, message=f"gunicorn on {self.url}")
        return self

    def ready(self):
        if self.process.poll() is not None:
            raise AssertionError(f"gunicorn exited: {self.log_path.read_text()[-3000:]}")
        try:
            return httpx.get(self.url + "/v1/openapi.json", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


@pytest.fixture(scope="session")
def site(django_db_setup):
    """The live web server; backends send webhooks and uploads to it. It
    stops (closing its database connections) before the database is dropped."""
    from django.conf import settings

    server = WebServer().start()
    settings.SITE_URL = server.url
    yield server
    server.stop()


@pytest.fixture(scope="session")
def replicate_cloud():
    from tests.fakes.replicate_cloud import FakeReplicate

    fake = FakeReplicate()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def worker_env(site, django_db_setup, django_db_blocker, replicate_cloud):
    from django.conf import settings
    from django.db import connection

    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "SITE_URL": site.url,
        "SECRET_KEY": settings.SECRET_KEY,
        "REPLICATE_API_URL": replicate_cloud.url + "/v1",
        "REPLICATE_API_TOKEN": replicate_cloud.token,
        "REPLICATE_WEBHOOK_SECRET": replicate_cloud.webhook_secret,
        "LIGHTBOX_REPLICATE_WEBHOOKS": "off",
        "LIGHTBOX_REPLICATE_POLL_INTERVAL": "0.2",
        "LIGHTBOX_HTTP_TIMEOUT": "3",
        # No beat runs in the tests, and the session's worker must not run the
        # reconciler on other tests' rows: tests call it, or start a worker that does.
        "LIGHTBOX_RECONCILER_STANDBY": "off",
    }
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    else:
        env["DATABASE_URL"] = (
            f"postgres://{db['USER'] or ''}{':' + db['PASSWORD'] if db['PASSWORD'] else ''}@"
            f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    return env


@pytest.fixture(scope="session")
def worker(worker_env, replicate_settings):
    worker = Worker(worker_env).start()
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def replicate_settings(replicate_cloud):
    """Point this process at the stand-in for Replicate's cloud too."""
    from django.conf import settings

    settings.REPLICATE_API_URL = replicate_cloud.url + "/v1"
    settings.REPLICATE_API_TOKEN = replicate_cloud.token
    settings.REPLICATE_WEBHOOK_SECRET = replicate_cloud.webhook_secret
    settings.REPLICATE_USE_WEBHOOKS = "off"
    return settings


@pytest.fixture(scope="session")
def cog_server(site):
    server = CogServer(COG_PREDICTOR_DIR).uploading().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_sd_model(tmp_path_factory):
    """The tiny random-weight SD pipeline (inference/tiny.py), written once."""
    pytest.importorskip("diffusers")
    from inference import tiny

    sd, _ = tiny.write_all(tmp_path_factory.mktemp("models"))
    return sd


@pytest.fixture(scope="session")
def tiny_sd(site, tiny_sd_model):
    """Our inference server on tiny-sd, uploading its outputs to the live site as
    the version at its own address does, and loading a fine-tune's weights from
    Lightbox's signed URLs (LIGHTBOX_WEIGHTS_URL; no other loopback address)."""
    from app.services.backends.cog import weights_url_prefix

    server = InferenceServer(
        tiny_sd_model, env={"LIGHTBOX_WEIGHTS_URL": weights_url_prefix(), "LIGHTBOX_NETWORK_ALLOWLIST": ""}
    )
    server.uploading().start()
    yield server
    server.stop()


@pytest.fixture
def cog_version(transactional_db, cog_server):
    from app.services import catalog

    version = catalog.import_version(cog_server.url, "local/test-model")
    catalog.refresh_availability(version, max_age=0)
    return version


SDXL = "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc"


@pytest.fixture
def sdxl(transactional_db, replicate_settings, replicate_cloud):
    """The catalog's SDXL on Replicate's cloud (its stand-in, tests.fakes.replicate_cloud, reset)."""
    import json

    from app.services import catalog

    replicate_cloud.reset()
    entry = next(e for e in json.loads(catalog.REPLICATE_CATALOG.read_text()) if e["version_id"] == SDXL)
    version = catalog.add_version(
        "stability-ai",
        "sdxl",
        "replicate",
        f"stability-ai/sdxl:{SDXL}",
        entry["openapi_schema"],
        entry["cog_version"],
        version_id=SDXL,
    )
    catalog.refresh_availability(version, max_age=0)
    return version


@pytest.fixture
def alice(transactional_db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("alice", "alice@example.com", "correct horse battery")


@pytest.fixture
def bob(transactional_db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("bob", "bob@example.com", "correct horse battery")


def make_trusted_reporter(user, version):
    """Give `user` what the reporter trust rule asks (app.services.moderation.trusted_reporters):
    an account old enough, with enough succeeded predictions of their own on `version`."""
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from app.models import Prediction

    user.date_joined = timezone.now() - timedelta(days=settings.REPORTER_MIN_AGE_DAYS, hours=1)
    user.save(update_fields=["date_joined"])
    for _ in range(settings.REPORTER_MIN_PREDICTIONS):
        Prediction.objects.create(
            version=version,
            owner=user,
            input={"prompt": "mine"},
            status="succeeded",
            visibility="private",
            completed_at=timezone.now(),
        )
    return user


@pytest.fixture
def alice_token(alice):
    from app.models import ApiToken

    return ApiToken.issue(alice)[1]


@pytest.fixture
def api(site, alice_token):
    """An HTTP client for /v1 on the live server, signed in as alice."""
    with httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {alice_token}"}, timeout=70) as client:
        yield client


def wait_for_status(prediction_id, statuses=("succeeded", "failed", "canceled"), timeout=30):
    from app.models import Prediction

    def done():
        prediction = Prediction.objects.get(pk=prediction_id)
        return prediction if prediction.status in statuses else None

    return wait_until(done, timeout=timeout, message=f"prediction {prediction_id} to reach {statuses}")


@pytest.fixture
def queued(monkeypatch):
    """The ids of the predictions a test starts, which are recorded instead of
    sent to the broker: the session's real worker (started by the end-to-end
    tests) would take them, run or fail them and settle their cost while the
    test looks at them, and race the database flush between tests, which
    deadlocks on PostgreSQL. For tests of what happens before a prediction runs."""
    from tasks.predictions import run_prediction

    ids = []
    monkeypatch.setattr(run_prediction, "delay", ids.append)
    return ids


@pytest.fixture
def stored_files(transactional_db):
    """After a fault: `stored_files.assert_intact(prediction, ...)` asserts that
    no output file was lost or orphaned since the test began (tests/stored_files.py)."""
    from tests.stored_files import StoredFiles

    return StoredFiles()


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing():
    """alice and bob get passwords in every test: the production hasher's
    million iterations cost about a second each on these machines."""
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session", autouse=True)
def _empty_broker_folder():
    """The session's own folder (tests/environment.py) starts empty; one the
    caller named in LIGHTBOX_VAR_DIR may hold an earlier run's messages, which
    the session's worker would take."""
    from django.conf import settings

    if OWN_VAR_DIR:
        return
    shutil.rmtree(settings.BROKER_DIR, ignore_errors=True)
    # The Celery app made these folders when it was imported; publishing (before
    # any worker starts, which would make them again) needs them.
    for key in ("data_folder_in", "processed_folder", "control_folder"):
        if key in settings.CELERY_BROKER_TRANSPORT_OPTIONS:
            os.makedirs(settings.CELERY_BROKER_TRANSPORT_OPTIONS[key], exist_ok=True)


@pytest.fixture(scope="session", autouse=True)
def _redis_keys_of_its_own():
    """The session's keys on Redis (tests/environment.py) are deleted when it
    ends (after its worker stopped), and those of killed sessions when it begins."""
    from django.conf import settings

    if not (settings.REDIS_URL and OWN_REDIS_PREFIX):
        yield
        return
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)

    def delete(session):
        for key in client.scan_iter(match="test-*:*"):
            if session(key.decode().split(":", 1)[0].removeprefix("test-")):
                client.delete(key)

    delete(stale)
    yield
    delete(lambda pid: pid == str(os.getpid()))
    client.close()


@pytest.fixture(autouse=True)
def _throttles_of_its_own(settings):
    """Each test counts log-ins, resets and visitors' runs afresh (app.core.throttle):
    a cache key prefix of its own. Not cache.clear(): on Redis that flushes the
    broker's database too."""
    import uuid

    default = settings.CACHES["default"]
    prefix = f"{settings.REDIS_PREFIX}test-{uuid.uuid4().hex[:12]}"  # within the session's (tests/environment.py)
    settings.CACHES = {**settings.CACHES, "default": {**default, "KEY_PREFIX": prefix}}
