"""Shared pieces of the benchmarks: real components started as child processes
(Cog server, gunicorn, Celery worker), environments for the two configurations,
and the Django-side setup steps.

The benchmark scripts never import Django themselves: each configuration needs
its own settings (database, broker), so everything Django-side runs in a child
process started with that configuration's environment:

    python bench/harness.py setup-dispatch --cog-url URL   -> JSON on stdout
    python bench/harness.py timings < ids                  -> JSON on stdout
    python bench/harness.py seed --count 10000 ...         -> JSON on stdout
    python bench/harness.py setup-faults --cog-url URL --version NAME=URL ...
    python bench/harness.py audit < {"ids": [...], "before": [...]}
    python bench/harness.py setup-waiters | end-waiters              -> JSON on stdout
    python bench/harness.py load-audit < {"prefix": ..., ...} | end-unfinished < {"prefixes": [...]}

It also holds the private servers bench/load_faults.py stops and fills: a
PostgreSQL (initdb), a redis-server, a small disk for the var dir.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
COG_PREDICTOR_DIR = ROOT / "tests" / "cog_predictor"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/lightbox_bench"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/5"
DEFAULT_VAR_DIR = ROOT / "var" / "bench"
# Settings the embedded configuration must not inherit from the caller's shell.
CONFIG_VARS = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "MEDIA_ROOT",
    "SITE_URL",
    "PORT",
    "LIGHTBOX_VAR_DIR",
    "DJANGO_SETTINGS_MODULE",
    "AWS_STORAGE_BUCKET_NAME",
)


def stop_children_on_sigterm():
    """Turn SIGTERM (e.g. from `timeout`) into SystemExit, so the `finally`
    blocks stop the components: they run in their own sessions and would
    outlive the benchmark otherwise."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def check_interpreter():
    """The components are started from this interpreter's venv (cog, gunicorn, celery)."""
    missing = [name for name in ("gunicorn", "celery") if not (VENV_BIN / name).exists()]
    try:
        import cog  # noqa: F401
    except ImportError:
        missing.append("cog")
    if missing:
        sys.exit(
            f"{sys.executable} lacks {', '.join(missing)}: run the benchmark with the project's venv, "
            f"e.g. .venv/bin/python {sys.argv[0]} (pip install -e '.[dev]')"
        )


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout=60.0, interval=0.05, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {message}")


def config_env(config, var_dir, site_port, database_url=DEFAULT_DATABASE_URL, broker_url=DEFAULT_BROKER_URL):
    """The environment of every process of one configuration.

    "postgres": PostgreSQL + Redis. "embedded": no DATABASE_URL and no
    CELERY_BROKER_URL, so SQLite and the filesystem transport under var/.
    Both get their own LIGHTBOX_VAR_DIR and the web server's SITE_URL
    (Cog webhooks and uploads go there)."""
    env = {key: value for key, value in os.environ.items() if key not in CONFIG_VARS}
    env.update(
        PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        LIGHTBOX_VAR_DIR=str(var_dir),
        SITE_URL=f"http://127.0.0.1:{site_port}",
        PYTHONPATH=str(ROOT),
        # A key of its own in the var dir, made by the first process (as `make run` does).
        LIGHTBOX_SECRET_KEY_CREATE="1",
    )
    # One user sends hundreds of predictions a minute: the per-user limits
    # would refuse them (429), and they are not what is measured.
    for name in ("LIGHTBOX_RATE_LIMIT_PER_MINUTE", "LIGHTBOX_DAILY_QUOTA", "LIGHTBOX_MAX_CONCURRENT"):
        env.setdefault(name, "none")
    if config == "postgres":
        env.update(DATABASE_URL=database_url, CELERY_BROKER_URL=broker_url)
    elif config != "embedded":
        raise ValueError(config)
    return env


class Process:
    """A child process in its own session, logging to a file.

    Web, worker and the Django steps run in the configuration's var dir (the
    code comes from PYTHONPATH), so nothing they write relative to the working
    directory lands in the checkout."""

    def __init__(self, name, command, env, log_dir, cwd=ROOT):
        self.name = name
        self.command = command
        self.env = env
        self.cwd = cwd
        self.log_path = Path(log_dir) / f"{name}.log"
        self.process = None

    def start(self):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def check_alive(self):
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.process.returncode}): {self.tail()}")

    def tail(self, size=3000):
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def cpu_seconds(self):
        """CPU time used so far by this process and its children (its session)."""
        return session_cpu_seconds(self.process.pid)

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process:
            self.log.close()

    def kill(self):
        """SIGKILL the whole session, as when the machine runs out of memory."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        if self.process:
            self.log.close()


def session_cpu_seconds(sid):
    """User + system CPU seconds of the live processes of session `sid`."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state ppid pgrp session ... utime(12) stime(13)
        if int(fields[3]) == sid:
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def pid_cpu_seconds(pids):
    """{pid: user + system CPU seconds} of the given processes still alive."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return out


class PostgresCpu:
    """CPU time the benchmark database's backends use between start() and
    seconds(): backends opened meanwhile count whole, closed ones are lost
    (gunicorn's threads keep theirs for CONN_MAX_AGE, 60 s)."""

    def __init__(self, database_url):
        self.database_url = database_url
        self.before = pid_cpu_seconds(postgres_backends(database_url))

    def seconds(self):
        after = pid_cpu_seconds(postgres_backends(self.database_url))
        return sum(cpu - self.before.get(pid, 0) for pid, cpu in after.items())


def postgres_backends(database_url):
    """PIDs of the PostgreSQL backends connected to the database of `database_url`
    (the server runs on this machine, so their CPU time can be read)."""
    from urllib.parse import urlsplit

    import psycopg

    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [name]).fetchall()
    return [row[0] for row in rows]


def _get_json(url, timeout=1.0):
    import httpx

    try:
        return httpx.get(url, timeout=timeout).json()
    except (httpx.HTTPError, ValueError):
        return None


def cog_server(port, env, log_dir, upload_url=None, name="cog"):
    """The Cog HTTP server on tests/cog_predictor (the instant predictor)."""
    command = [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1"]
    if upload_url:
        command += ["--upload-url", upload_url]
    server = Process(
        name,
        command,
        {**env, "PORT": str(port), "COG_PREDICT_TYPE_STUB": "predict.py:Predictor"},
        log_dir,
        cwd=COG_PREDICTOR_DIR,
    ).start()

    def ready():
        server.check_alive()
        return (_get_json(f"http://127.0.0.1:{port}/health-check") or {}).get("status") == "READY"

    wait_until(ready, timeout=90, message=f"Cog server on port {port}")
    return server


WEB_SERVERS = ("asgi", "gthread")


def gunicorn(port, env, log_dir, workers=2, threads=8, extra=(), server="asgi"):
    """The web process. "asgi": as the Procfile runs it, uvicorn workers with
    `threads` threads each for the views (lightbox.webserver). "gthread": the
    server before it, gunicorn's threads (a waiting request holds one)."""
    if server == "asgi":
        env = {**env, "LIGHTBOX_WEB_THREADS": str(threads)}
        serving = ["lightbox.asgi", "--worker-class", "lightbox.webserver.Worker"]
    elif server == "gthread":
        serving = ["lightbox.wsgi", "--worker-class", "gthread", "--threads", str(threads)]
    else:
        raise ValueError(server)
    command = [
        str(VENV_BIN / "gunicorn"),
        *serving,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--timeout",
        "90",
        *extra,
    ]
    web = Process("web", command, env, log_dir, cwd=env["LIGHTBOX_VAR_DIR"]).start()

    def ready():
        web.check_alive()
        import httpx

        try:
            return httpx.get(f"http://127.0.0.1:{port}/v1/openapi.json", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=60, message=f"gunicorn on port {port}")
    return web


def celery_worker(env, log_dir, pool="threads", concurrency=2, name="worker"):
    """A Celery worker; a restarted one needs a new `name` (its log tells when it is ready)."""
    command = [
        str(VENV_BIN / "celery"),
        "-A",
        "lightbox",
        "worker",
        "--pool",
        pool,
        "--concurrency",
        str(concurrency),
        "--loglevel",
        "INFO",
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
    ]
    worker = Process(name, command, env, log_dir, cwd=env["LIGHTBOX_VAR_DIR"]).start()

    def ready():
        worker.check_alive()
        return "ready." in worker.tail(100_000)

    wait_until(ready, timeout=60, message="Celery worker")
    return worker


def celery_beat(env, log_dir):
    """Celery beat: it queues the reconciler every LIGHTBOX_RECONCILE_INTERVAL seconds."""
    command = [str(VENV_BIN / "celery"), "-A", "lightbox", "beat", "--loglevel", "INFO"]
    beat = Process("beat", command, env, log_dir, cwd=env["LIGHTBOX_VAR_DIR"]).start()

    def ready():
        beat.check_alive()
        return "beat: Starting..." in beat.tail(100_000)

    wait_until(ready, timeout=60, message="Celery beat")
    return beat


def manage(env, *args):
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=env["LIGHTBOX_VAR_DIR"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def django_step(env, *args, stdin=None, script=__file__):
    """Run one of `script`'s (this module's) Django-side subcommands; return its JSON."""
    result = subprocess.run(
        [sys.executable, str(Path(script)), *args],
        cwd=env["LIGHTBOX_VAR_DIR"],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"harness {args[0]} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def reset_var_dir(var_dir):
    shutil.rmtree(var_dir, ignore_errors=True)
    Path(var_dir).mkdir(parents=True, exist_ok=True)


def reset_postgres(database_url):
    """Drop and recreate the benchmark's database, so every run starts equal."""
    from urllib.parse import urlsplit

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    base = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432), "-U", parts.username or "postgres"]
    subprocess.run(["dropdb", *base, "--if-exists", "--force", name], check=True)
    subprocess.run(["createdb", *base, name], check=True)


def create_postgres_if_missing(database_url):
    """Create the database of `database_url` unless it exists (its data is kept)."""
    from urllib.parse import urlsplit

    import psycopg

    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def reset_redis(broker_url):
    import redis

    redis.Redis.from_url(broker_url).flushdb()


class Unavailable(Exception):
    """A prerequisite of a benchmark is missing: its message says which and what to do."""


def postgres_bin(name):
    """A PostgreSQL server binary (initdb, pg_ctl): on PATH, or the newest under
    /usr/lib/postgresql/*/bin (Debian keeps them off PATH)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    if not candidates:
        raise Unavailable(f"{name} not found (apt-get install postgresql)")
    return str(candidates[-1])


class PrivatePostgres:
    """A PostgreSQL server of the benchmark's own (initdb in a temporary folder,
    its own port), so that stopping it disturbs no one else's database. initdb
    refuses to run as root: as root, the server runs as the `postgres` user."""

    def __init__(self, base_dir, port):
        self.base_dir = Path(base_dir)
        self.data = self.base_dir / "data"
        self.port = port
        self.log = self.base_dir / "postgres.log"
        self.url = f"postgres://postgres@127.0.0.1:{port}/lightbox"
        self.initdb, self.pg_ctl = postgres_bin("initdb"), postgres_bin("pg_ctl")
        self.as_user = []
        if os.geteuid() == 0:
            if not shutil.which("runuser"):
                raise Unavailable("running as root, PostgreSQL needs `runuser` to start as the postgres user")
            import pwd

            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root, and there is no `postgres` user to run PostgreSQL as") from None
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *command):
        subprocess.run([*self.as_user, *command], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def init(self):
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o777)
        self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        create_postgres_if_missing(self.url)
        return self

    def start(self):
        # fsync off: the benchmark measures the app, not this machine's disk.
        options = f"-p {self.port} -k {self.base_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self):
        """`pg_ctl stop -m fast`: every connection is cut, as on a restart."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self):
        return (
            subprocess.run([*self.as_user, self.pg_ctl, "-D", str(self.data), "status"], capture_output=True).returncode
            == 0
        )


class PrivateRedis:
    """A redis-server of the benchmark's own, without persistence: stopping it
    loses what it held, as a crash would."""

    def __init__(self, port, log_dir):
        if not shutil.which("redis-server"):
            raise Unavailable("redis-server not found (apt-get install redis-server)")
        self.port = port
        self.log_dir = log_dir
        self.url = f"redis://127.0.0.1:{port}"
        self.process = None
        self.starts = 0

    def start(self):
        import redis

        self.starts += 1
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = Process(f"redis-{self.starts}", command, dict(os.environ), self.log_dir).start()
        client = redis.Redis.from_url(self.url)

        def ready():
            self.process.check_alive()
            try:
                return client.ping()
            except redis.RedisError:
                return False

        wait_until(ready, timeout=30, message=f"redis-server on port {self.port}")
        return self

    def stop(self):
        if self.process:
            self.process.stop()

    def flushall(self):
        import redis

        redis.Redis.from_url(self.url).flushall()


class SmallDisk:
    """A small filesystem mounted for the var dir (media, uploads, beat's
    schedule), so a benchmark can fill it: tmpfs if this process may mount
    one, else an ext4 image on a loop device (no blocks reserved for root,
    which the components run as)."""

    FILL = ".disk-full-fill"

    def __init__(self, path, size_mb):
        self.path = Path(path)
        self.size_mb = size_mb
        self.kind = None
        self.image = None

    def mount(self):
        self.path.mkdir(parents=True, exist_ok=True)
        tried = []
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
        )
        if result.returncode == 0:
            self.kind = f"tmpfs, {self.size_mb} MiB"
            return self
        tried.append(f"tmpfs: {result.stderr.strip()}")
        self.image = self.path.with_suffix(".img")
        with open(self.image, "wb") as image:
            image.truncate(self.size_mb * 2**20)
        for command in (
            ["mkfs.ext4", "-q", "-F", "-m", "0", str(self.image)],
            ["mount", "-o", "loop", str(self.image), str(self.path)],
        ):
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode:
                tried.append(f"{' '.join(command[:2])}: {result.stderr.strip()}")
                self.image.unlink()
                raise Unavailable("cannot mount a small disk to fill (root needed): " + "; ".join(tried))
        self.kind = f"ext4 loop image, {self.size_mb} MiB"
        return self

    def fill(self):
        """Write until the disk is full; return the bytes written."""
        written = 0
        chunk = b"\0" * 2**20
        with open(self.path / self.FILL, "wb", buffering=0) as fh:
            try:
                while True:
                    written += fh.write(chunk)
            except OSError:
                pass
            # The last, partial chunk too: not one byte left.
            try:
                while True:
                    written += fh.write(b"\0" * 4096) or 0
            except OSError:
                pass
        return written

    def free(self):
        (self.path / self.FILL).unlink(missing_ok=True)

    def umount(self):
        if self.kind:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
            self.kind = None
        if self.image:
            self.image.unlink(missing_ok=True)


class CpuMeter:
    """Whole-machine load while a phase runs (other people share this machine)."""

    def __init__(self):
        self.start = self._read()
        self.load_start = os.getloadavg()[0]

    @staticmethod
    def _read():
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        idle = values[3] + values[4]
        return sum(values), idle

    def summary(self):
        total, idle = self._read()
        busy = 1 - (idle - self.start[1]) / max(1, total - self.start[0])
        return {"cpu_busy": round(busy, 3), "loadavg_start": self.load_start, "loadavg_end": os.getloadavg()[0]}


def parse_choices(parser, text, choices, what="faults"):
    """A comma-separated subset of `choices` from the command line; the parser
    refuses a name it does not know."""
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = set(chosen) - set(choices)
    if unknown:
        parser.error(f"unknown {what}: {', '.join(sorted(unknown))}")
    return chosen


def percentile(values, q):
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def print_table(headers, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(f"{{:>{w}}}" for w in widths)
    print(line.format(*headers))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))


# --- Django-side steps (run in a child process with one configuration's env) ---


def _django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lightbox.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _user(username):
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username=username)
    return user


def step_setup_dispatch(args):
    _django()
    from app.models import ApiToken
    from app.services import catalog

    user = _user("bench")
    _, token = ApiToken.issue(user, name="dispatch benchmark")
    version = catalog.import_version(args.cog_url, args.model)
    catalog.refresh_availability(version, max_age=0)
    if not version.available:
        raise SystemExit(f"version not available: {version.unavailable_reason}")
    print(json.dumps({"token": token, "version": version.id, "ref": version.ref}))


def step_upload_url(args):
    _django()
    from app.services import storage

    print(json.dumps({"upload_url": storage.upload_url(args.cog_url)}))


def step_timings(args):
    """Server-side timestamps of the given predictions (ids on stdin)."""
    _django()
    from app.models import Prediction

    ids = sys.stdin.read().split()
    rows = Prediction.objects.filter(pk__in=ids).values(
        "id", "status", "created_at", "attempted_at", "dispatched_at", "started_at", "completed_at", "predict_time"
    )
    out = {}
    for row in rows:
        out[row["id"]] = {
            key: (value.timestamp() if hasattr(value, "timestamp") else value) for key, value in row.items()
        }
    print(json.dumps(out))


def step_seed(args):
    """`count` succeeded predictions with `outputs` Outputs each, all owned by a
    fresh user whose token the load generator uses."""
    _django()
    import random
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from app.models import ApiToken, Output, Prediction
    from app.services import catalog

    get_user_model().objects.filter(username="bench-api").delete()
    user = _user("bench-api")
    _, token = ApiToken.issue(user, name="throughput benchmark")
    schema = json.loads((COG_PREDICTOR_DIR / ".cog" / "openapi_schema.json").read_text())
    # Never run: the predictions are created as already finished.
    version = catalog.add_version("local", "bench-api", "cog", "http://127.0.0.1:9", schema, "0.23.1")
    rng = random.Random(1)
    now = timezone.now()
    predictions, outputs = [], []
    for i in range(args.count):
        created = now - timedelta(seconds=args.count - i)
        inp = {
            "prompt": f"a lighthouse at dusk, oil painting, number {i}",
            "negative_prompt": "blurry",
            "width": 512,
            "height": 512,
            "num_outputs": args.outputs,
            "num_inference_steps": 4,
            "guidance_scale": 7.5,
            "scheduler": "K_EULER",
            "seed": rng.randrange(2**32),
        }
        p = Prediction(
            version=version,
            owner=user,
            input=inp,
            status=Prediction.Status.SUCCEEDED,
            logs="".join(f"step {k}/4\n" for k in range(1, 5)),
            created_at=created,
            started_at=created + timedelta(milliseconds=20),
            completed_at=created + timedelta(milliseconds=900),
            predict_time=0.85,
            remote_id="",
            dispatched_at=created,
            heard_at=created,
        )
        p.remote_id = p.id
        predictions.append(p)
        for index in range(args.outputs):
            base = f"outputs/{p.id[:2]}/{p.id}/"
            outputs.append(
                Output(
                    prediction=p,
                    index=index,
                    file=base + f"{index}.png",
                    thumbnail=base + f"{index}.thumb.webp",
                    width=512,
                    height=512,
                    sha256=f"{rng.getrandbits(256):064x}",
                )
            )
    with transaction.atomic():
        Prediction.objects.bulk_create(predictions, batch_size=2000)
        Output.objects.bulk_create(outputs, batch_size=2000)
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    own = sorted(predictions, key=lambda p: (p.created_at, p.id), reverse=True)
    # Cursors of list pages all through the user's predictions, as the API makes them.
    from app.core import pagination
    from app.views.api import PAGE_SIZE

    cursors = [""] + [pagination.encode("next", own[k - 1]) for k in range(PAGE_SIZE, len(own), PAGE_SIZE)]
    Path(args.ids_file).write_text("\n".join(p.id for p in own) + "\n")
    Path(args.cursors_file).write_text("\n".join(cursors) + "\n")
    print(
        json.dumps(
            {
                "token": token,
                "predictions": Prediction.objects.count(),
                "outputs": Output.objects.count(),
                "pages": len(cursors),
                "queries": _queries_per_request(token, own[len(own) // 2].id, cursors[1]),
            }
        )
    )


def _queries_per_request(token, prediction_id, cursor):
    """The SQL each endpoint runs (Django test client, same settings)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    out = {}
    for name, path in (
        ("get", f"/v1/predictions/{prediction_id}"),
        ("list", "/v1/predictions"),
        ("list_cursor", f"/v1/predictions?cursor={cursor}"),
    ):
        client.get(path)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.content[:300])
        out[name] = {"queries": len(queries), "sql": [q["sql"][:160] for q in queries], "bytes": len(response.content)}
    return out


def step_setup_waiters(args):
    """A user and token for the waiting clients, and a version whose predictions
    never run (no worker takes them): each waits until the benchmark ends it."""
    _django()
    from datetime import timedelta

    from django.utils import timezone

    from app.models import ApiToken
    from app.services import catalog

    user = _user("bench-waiters")
    _, token = ApiToken.issue(user, name="waiters benchmark")
    schema = json.loads((COG_PREDICTOR_DIR / ".cog" / "openapi_schema.json").read_text())
    version = catalog.add_version("local", "bench-waiters", "cog", "http://127.0.0.1:9", schema, "0.23.1")
    # Available, and not asked again during the run (its server does not exist).
    version.set_availability(True)
    type(version).objects.filter(pk=version.pk).update(checked_at=timezone.now() + timedelta(days=1))
    print(json.dumps({"token": token, "version": version.pk}))


def step_end_waiters(args):
    """End every unfinished prediction of the waiting clients' user, as a
    webhook would: each transition notifies the waiting requests."""
    _django()
    from app.models import Prediction
    from app.services import predictions

    ended = 0
    for prediction in Prediction.objects.filter(owner__username="bench-waiters").exclude(
        status__in=Prediction.TERMINAL
    ):
        predictions.fail(prediction, "Ended by the benchmark")
        ended += 1
    print(json.dumps({"ended": ended}))


def step_setup_faults(args):
    """A token for the faults benchmark's user, the version of the real Cog
    server and one version for each stand-in (name=url) in front of it."""
    _django()
    from app.models import ApiToken
    from app.services import catalog

    user = _user("bench-faults")
    _, token = ApiToken.issue(user, name="faults benchmark")
    cog = catalog.import_version(args.cog_url, "local/faults")
    versions = {"cog": cog.id}
    for entry in args.version:
        name, _, url = entry.partition("=")
        versions[name] = catalog.add_version(
            "local", f"faults-{name}", "cog", url, cog.openapi_schema, cog.cog_version
        ).id
    print(json.dumps({"token": token, "versions": versions}))


def step_audit(args):
    """tests/stored_files.py's check of the given predictions and of the files
    that appeared since `before` (JSON on stdin); also the files there now and
    how many times each prediction was handed to its server."""
    _django()
    from app.models import Prediction
    from tests.stored_files import audit, snapshot

    request = json.loads(sys.stdin.read())
    result = audit(request["ids"], frozenset(request["before"]))
    attempts = dict(Prediction.objects.filter(pk__in=request["ids"]).values_list("id", "dispatch_attempts"))
    print(
        json.dumps(
            {
                "lost": result.lost,
                "orphaned": result.orphaned,
                "files": sorted(snapshot()),
                "dispatch_attempts": attempts,
            }
        )
    )


def step_load_audit(args):
    """For bench/load_faults.py, the predictions whose prompt starts with
    `prefix` (stdin JSON: prefix, before, cog_logs, var_before): each one's
    status, error, times, how many times the model ran it and whether an
    output upload failed (the Cog servers' logs: coglet logs "Starting
    prediction" and "Failed to upload file output" with its id, which is ours); tests/stored_files.py's check of them; and the files left in the
    var dir outside storage (a spool, temporary files) since `var_before`."""
    _django()
    from collections import Counter

    from django.conf import settings
    from django.core.files.storage import default_storage

    from app.models import Prediction
    from tests.stored_files import audit, snapshot

    request = json.loads(sys.stdin.read())
    runs, upload_failed = Counter(), set()
    for log in request.get("cog_logs", ()):
        for line in Path(log).read_text(errors="replace").splitlines():
            for message, record in (
                ('"Starting prediction"', runs.update),
                ('"Failed to upload file output"', upload_failed.update),
            ):
                if message in line:
                    try:
                        record([json.loads(line)["fields"]["prediction_id"]])
                    except (ValueError, KeyError):
                        pass
    rows = []
    if request.get("prefix"):
        for prediction in Prediction.objects.filter(input__prompt__startswith=request["prefix"]).order_by("created_at"):
            rows.append(
                {
                    "id": prediction.id,
                    "prompt": prediction.input.get("prompt"),
                    "status": prediction.status,
                    "error": prediction.error,
                    "created_at": prediction.created_at.isoformat(),
                    "completed_at": prediction.completed_at.isoformat() if prediction.completed_at else None,
                    "dispatch_attempts": prediction.dispatch_attempts,
                    "runs": runs[prediction.remote_id or prediction.id],
                    # Cog could not upload an output of one of its runs.
                    "upload_failed": (prediction.remote_id or prediction.id) in upload_failed,
                }
            )
    result = audit([row["id"] for row in rows], frozenset(request.get("before", ())))
    empty = [name for name in result.orphaned if default_storage.exists(name) and default_storage.size(name) == 0]
    var_files = sorted(_var_files(Path(settings.VAR_DIR), Path(settings.MEDIA_ROOT)))
    print(
        json.dumps(
            {
                "rows": rows,
                "lost": result.lost,
                "orphaned": result.orphaned,
                "orphaned_empty": empty,
                "files": sorted(snapshot()),
                "var_files": var_files,
                # Not twice what stored_files.py already counts ("spooled upload NAME of ID").
                "var_left": sorted(
                    name
                    for name in set(var_files) - set(request.get("var_before", ()))
                    if not any(entry.startswith(f"spooled upload {Path(name).name} ") for entry in result.orphaned)
                ),
            }
        )
    )


# What the components keep in the var dir on purpose; anything else new there
# after a fault is left over (a spool not drained, a temporary file).
VAR_KEEP = ("secret_key", "celerybeat-schedule", SmallDisk.FILL, "logs/")


def _var_files(var_dir, media_root):
    """Files under the var dir, outside the storage folders stored_files.py checks."""
    storage_folders = [media_root / folder for folder in ("outputs", "uploads")]
    for path in var_dir.rglob("*"):
        if not path.is_file() or any(folder in path.parents for folder in storage_folders):
            continue
        name = str(path.relative_to(var_dir))
        if not name.startswith(VAR_KEEP):
            yield name


def step_end_unfinished(args):
    """End every unfinished prediction whose prompt starts with one of the
    prefixes (stdin JSON), so the next fault starts with nothing left over."""
    _django()
    from app.models import Prediction
    from app.services import predictions

    ended = 0
    for prefix in json.loads(sys.stdin.read())["prefixes"]:
        for prediction in Prediction.objects.active().filter(input__prompt__startswith=prefix):
            predictions.fail(prediction, "Ended by the benchmark")
            ended += 1
    print(json.dumps({"ended": ended}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("setup-dispatch")
    p.add_argument("--cog-url", required=True)
    p.add_argument("--model", default="local/bench")
    p = sub.add_parser("upload-url")
    p.add_argument("--cog-url", required=True, help="the location the Cog server's version is imported from")
    sub.add_parser("timings")
    p = sub.add_parser("seed")
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--outputs", type=int, default=1)
    p.add_argument("--ids-file", required=True)
    p.add_argument("--cursors-file", required=True)
    p = sub.add_parser("setup-faults")
    p.add_argument("--cog-url", required=True)
    p.add_argument("--version", action="append", default=[], help="NAME=URL of a stand-in Cog server")
    sub.add_parser("audit")
    sub.add_parser("setup-waiters")
    sub.add_parser("end-waiters")
    sub.add_parser("load-audit")
    sub.add_parser("end-unfinished")
    args = parser.parse_args()
    steps = {
        "setup-dispatch": step_setup_dispatch,
        "upload-url": step_upload_url,
        "timings": step_timings,
        "seed": step_seed,
        "setup-faults": step_setup_faults,
        "audit": step_audit,
        "setup-waiters": step_setup_waiters,
        "end-waiters": step_end_waiters,
        "load-audit": step_load_audit,
        "end-unfinished": step_end_unfinished,
    }
    steps[args.step](args)


if __name__ == "__main__":
    main()
