"""Lightbox settings: one module, read from environment variables.

The defaults run on a fresh checkout with nothing else installed: SQLite, the
Celery filesystem transport and media files, all under var/.
"""

import ipaddress
import os
import secrets
from decimal import Decimal
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured


def envbool(name, default="False"):
    return os.environ.get(name, default).lower() in ("1", "true", "yes", "on")


def envint(name, default):
    return int(os.environ.get(name, default))


def envfloat(name, default):
    return float(os.environ.get(name, default))


def envlimit(name, default, kind=int):
    """A limit: a number, or no limit when set to "" or "none"."""
    value = os.environ.get(name, default).strip().lower()
    return None if value in ("", "none") else kind(value)


BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("LIGHTBOX_VAR_DIR", BASE_DIR / "var"))


def secret_key_from_file(path, create=False):
    """The key kept in `path`; with `create`, a new random one is written there
    first (readable by its owner only) if there is none. Only `make run` and the
    tests create it: a deployment without a key refuses to start."""
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside, then linked into place: processes starting together
        # never read half a key, and the first one's key is everyone's.
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        with open(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            # 67 characters from 64 symbols: past check --deploy's 50 characters, 5 distinct.
            fh.write(secrets.token_urlsafe(50) + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = ""
    if not key:
        raise ImproperlyConfigured(
            f"No secret key: SECRET_KEY is not set and {path} does not exist or is empty. Set the SECRET_KEY "
            'environment variable to a long random value, e.g. the output of python -c "import secrets; '
            f'print(secrets.token_urlsafe(50))", or write such a value into {path} (chmod 600), or name another '
            "file in LIGHTBOX_SECRET_KEY_FILE. `make run` makes that file for development by itself."
        )
    return key


# The key signs sessions, media links and Cog webhook and upload URLs, and
# derives users' webhook secrets, each purpose with its own salt. To rotate,
# move the old key into SECRET_KEY_FALLBACKS (README: Secret key and rotation).
SECRET_KEY_FILE = Path(os.environ.get("LIGHTBOX_SECRET_KEY_FILE", VAR_DIR / "secret_key"))
SECRET_KEY = os.environ.get("SECRET_KEY") or secret_key_from_file(
    SECRET_KEY_FILE, create=envbool("LIGHTBOX_SECRET_KEY_CREATE")
)
SECRET_KEY_FALLBACKS = [key.strip() for key in os.environ.get("SECRET_KEY_FALLBACKS", "").split(",") if key.strip()]

DEBUG = envbool("DEBUG", "False")
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver").split(",")

# The address this site is reached at. Backends send webhooks and uploads here.
SITE_URL = os.environ.get("SITE_URL", f"http://127.0.0.1:{os.environ.get('PORT', '8000')}").rstrip("/")
CSRF_TRUSTED_ORIGINS = [SITE_URL]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "app",
]

MIDDLEWARE = [
    # First, so that it times (and counts the queries of) everything below.
    "app.middleware.ServerTimingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "app.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # After auth and messages: its 400 page is a whole page, with the user's menu.
    "app.middleware.RefuseNulMiddleware",
    # A view that lost the database answers 503 with Retry-After, not 500.
    "app.middleware.DatabaseUnavailableMiddleware",
    # A page of an item moderators hid answers 410 (views raise access.Gone).
    "app.middleware.GoneMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "lightbox.urls"
WSGI_APPLICATION = "lightbox.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "app.context_processors.accounts",
                "app.context_processors.moderation",
            ],
        },
    },
]

# The web process and the worker both write to SQLite: WAL, a busy timeout and
# IMMEDIATE transactions keep it from answering "database is locked".
SQLITE_OPTIONS = {
    "timeout": 20,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "db.sqlite3",
            "TEST": {"NAME": VAR_DIR / "test-db.sqlite3"},
        }
    }
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["OPTIONS"] = SQLITE_OPTIONS
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    VAR_DIR.mkdir(parents=True, exist_ok=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [path for path in [BASE_DIR / "static"] if path.is_dir()]
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
if os.environ.get("AWS_STORAGE_BUCKET_NAME"):
    # S3-compatible object storage (pip install lightbox[s3]); django-storages
    # reads AWS_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ... from the environment.
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": os.environ["AWS_STORAGE_BUCKET_NAME"]},
    }

# Cog servers may post outputs as data: URIs in their webhooks; four SDXL PNGs
# are well over Django's 2.5 MB default, so the webhook endpoints allow more.
WEBHOOK_MAX_BYTES = envint("LIGHTBOX_WEBHOOK_MAX_BYTES", 64 * 1024 * 1024)
UPLOAD_MAX_BYTES = envint("LIGHTBOX_UPLOAD_MAX_BYTES", 32 * 1024 * 1024)
# A Cog server's upload is written here (this machine's own disk, fsynced)
# before its row is recorded and it is moved into storage, so it is kept while
# the database or the media storage is down (app.services.storage.receive_upload).
SPOOL_DIR = Path(os.environ.get("LIGHTBOX_SPOOL_DIR", VAR_DIR / "spool"))
# Files in storage and the spool that no row names are deleted once this old.
ORPHAN_TTL = envint("LIGHTBOX_ORPHAN_TTL", 24 * 3600)
SWEEP_INTERVAL = envint("LIGHTBOX_SWEEP_INTERVAL", 24 * 3600)

# Celery. The filesystem transport needs no server; data_folder_in and _out
# must be the same folder (producers write "out", workers read "in").
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's, with messages written atomically (tasks/broker.py says why).
    CELERY_BROKER_TRANSPORT = "tasks.broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # Exchange tables; kombu's default is "control" in the current folder.
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        "polling_interval": 0.05,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 3600)}
# Prepended to every key Lightbox keeps in Redis (the broker's and the cache's),
# so that instances sharing a Redis database (as the test sessions do) take
# only their own tasks.
REDIS_PREFIX = os.environ.get("LIGHTBOX_REDIS_PREFIX", "")
if REDIS_PREFIX and CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = REDIS_PREFIX
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", "False")
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# The cache holds the throttles' counters (app.core.throttle), so it must be one
# that every web process shares (not Django's per-process LocMem default):
# Redis when there is one (REDIS_URL, else a redis:// broker), else a table of
# the database, created by `migrate` (app.apps).
REDIS_URL = os.environ.get("REDIS_URL", "")
if not REDIS_URL and CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    REDIS_URL = CELERY_BROKER_URL
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"{REDIS_PREFIX}lightbox",
        },
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "lightbox_cache",
            # Culling at Django's default of 300 entries would let a burst of
            # new counters erase the ones that block someone.
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }

# Predictions. A prediction still "starting" with no backend id after
# DISPATCH_DEADLINE seconds is sent again; one whose backend has said nothing
# for its version's timeout is failed.
RECONCILE_INTERVAL = envfloat("LIGHTBOX_RECONCILE_INTERVAL", 10)
DISPATCH_DEADLINE = envfloat("LIGHTBOX_DISPATCH_DEADLINE", 30)
# Workers run the reconciler themselves when no run has ended for two
# intervals (beat is down or its messages are lost): tasks.standby.
RECONCILER_STANDBY = envbool("LIGHTBOX_RECONCILER_STANDBY", "True")
# Fair scheduling (app.services.scheduling): how many of a grid's or a
# benchmark run's predictions run on one Replicate version at once (a Cog
# server runs one; a pool, one per instance).
BATCH_REPLICATE_SLOTS = envint("LIGHTBOX_BATCH_REPLICATE_SLOTS", 4)
PREDICTION_TIMEOUT = envint("LIGHTBOX_PREDICTION_TIMEOUT", 600)
REPLICATE_POLL_INTERVAL = envfloat("LIGHTBOX_REPLICATE_POLL_INTERVAL", 1.0)
WEBHOOK_RETRIES = envint("LIGHTBOX_WEBHOOK_RETRIES", 5)
PREFER_WAIT_MAX = 60
# Threads per web process (lightbox.webserver): requests run on them, except while
# a `Prefer: wait` request waits, which holds none.
WEB_THREADS = envint("LIGHTBOX_WEB_THREADS", 8)
# Threads per web process for the results path alone (Cog's webhooks and uploads,
# Replicate's webhooks), so that no client load can hold a result up.
RESULTS_THREADS = envint("LIGHTBOX_RESULTS_THREADS", 4)
# On PostgreSQL, wake a waiting request by NOTIFY when its prediction ends
# (app.core.waits). Turn off behind a transaction-pooling PgBouncer, which does not
# deliver notices; waiting then polls the row.
WAIT_NOTIFY = envbool("LIGHTBOX_WAIT_NOTIFY", "True")

# Replicate's cloud (versions of kind "replicate" run there).
REPLICATE_API_TOKEN = os.environ.get("REPLICATE_API_TOKEN", "")
REPLICATE_API_URL = os.environ.get("REPLICATE_API_URL", "https://api.replicate.com/v1").rstrip("/")
REPLICATE_WEBHOOK_SECRET = os.environ.get("REPLICATE_WEBHOOK_SECRET", "")
# Webhooks from Replicate need SITE_URL reachable from the internet: "auto"
# uses them when SITE_URL resolves to public addresses, else polls; "on" or
# "off" force it.
REPLICATE_USE_WEBHOOKS = os.environ.get("LIGHTBOX_REPLICATE_WEBHOOKS", "auto")

# Local Cog servers started by `make run` (name -> port). More can be named in
# LIGHTBOX_LOCAL_MODELS, e.g. "sd-turbo,sdxl-turbo" (see README).
COG_HOST = os.environ.get("LIGHTBOX_COG_HOST", "127.0.0.1")
# Local model servers listen on this port + 1, + 2, ... (app.services.catalog).
COG_BASE_PORT = envint("LIGHTBOX_COG_BASE_PORT", 5100)


def local_pools(value):
    """{name: number of servers} from LIGHTBOX_LOCAL_MODELS, e.g. "tiny-sd*3
    sd-turbo": three servers for tiny-sd (a pool), one for sd-turbo. The tiny
    models always have at least one."""
    pools = {"tiny-sd": 1, "tiny-sdxl": 1}
    for entry in value.replace(",", " ").split():
        name, star, count = entry.partition("*")
        if not star:
            count = "1"
        if not count.isdigit() or not 1 <= int(count) <= MAX_LOCAL_INSTANCES:
            raise ImproperlyConfigured(
                f"LIGHTBOX_LOCAL_MODELS: {entry!r} should be NAME or NAME*N with N from 1 to {MAX_LOCAL_INSTANCES}."
            )
        pools[name] = int(count)
    return pools


# Ports: instance k (0-based) of a local model listens on its port + 10 k.
MAX_LOCAL_INSTANCES = 10
# The local servers `make run` starts: the tiny ones and LIGHTBOX_LOCAL_MODELS.
LOCAL_POOLS = local_pools(os.environ.get("LIGHTBOX_LOCAL_MODELS", ""))
SERVED_LOCAL_MODELS = list(LOCAL_POOLS)

# --- trainer (issue 13): local LoRA trainers ---------------------------------
# Local models that get a trainer server in `make run` (Cog's training mode,
# `manage.py serve_trainer NAME`, on port LIGHTBOX_COG_BASE_PORT + 200 + the
# model's offset: tiny-sd's at 5301). tiny-sd's is always there (Procfile);
# LIGHTBOX_LOCAL_TRAINERS="sd-1.5 sdxl" adds more.
LOCAL_TRAINERS = list(
    dict.fromkeys(["tiny-sd", *os.environ.get("LIGHTBOX_LOCAL_TRAINERS", "").replace(",", " ").split()])
)
# --- end trainer ---------------------------------------------------------------
# Seconds between the beat's checks of every version's availability; pages and
# /healthz read the stored result.
AVAILABILITY_INTERVAL = envfloat("LIGHTBOX_AVAILABILITY_INTERVAL", 15)
HTTP_TIMEOUT = envfloat("LIGHTBOX_HTTP_TIMEOUT", 10)

# Visibility defaults: web runs unlisted, API runs private.
DEFAULT_WEB_VISIBILITY = os.environ.get("LIGHTBOX_WEB_VISIBILITY", "unlisted")
DEFAULT_API_VISIBILITY = os.environ.get("LIGHTBOX_API_VISIBILITY", "private")

# --- Moderation, content safety, limits, network safety (README: Moderation) ---
# Distinct trusted reporters that hide a public or unlisted item until a
# moderator reviews it (anonymous reports only reach the queue).
REPORT_THRESHOLD = envint("LIGHTBOX_REPORT_THRESHOLD", 3)
# Whose reports count toward that threshold (app.services.moderation.trusted_reporters):
# staff, and unbanned accounts at least this many days old with at least this
# many succeeded predictions of their own. Everyone else's reports only queue.
REPORTER_MIN_AGE_DAYS = envint("LIGHTBOX_REPORTER_MIN_AGE_DAYS", 7)
REPORTER_MIN_PREDICTIONS = envint("LIGHTBOX_REPORTER_MIN_PREDICTIONS", 3)
# Reports without an account, per client address (an IPv6 /64) and hour;
# "none" sets no limit. Counted in the cache (CACHES below).
ANONYMOUS_REPORTS_PER_HOUR = envlimit("LIGHTBOX_ANONYMOUS_REPORTS_PER_HOUR", "5")
# --- Arena (README: Arena and leaderboard) ---
# Votes a signed-in voter may cast per day ("none": no cap).
ARENA_VOTES_PER_DAY = envlimit("LIGHTBOX_ARENA_VOTES_PER_DAY", "300")
# Visitors without an account may vote (off by default), at most this many
# votes an hour per client address (an IPv6 /64).
ARENA_ANONYMOUS = envbool("LIGHTBOX_ARENA_ANONYMOUS", "False")
ARENA_ANONYMOUS_VOTES_PER_HOUR = envlimit("LIGHTBOX_ARENA_ANONYMOUS_VOTES_PER_HOUR", "30")
# Bootstrap resamples behind each leaderboard's 95% intervals (at least 200).
ARENA_BOOTSTRAP_ROUNDS = max(200, envint("LIGHTBOX_ARENA_BOOTSTRAP_ROUNDS", 200))
# Seconds a leaderboard waits after a vote before it is fitted again, so a
# burst of votes costs one fit.
ARENA_RECOMPUTE_DELAY = envint("LIGHTBOX_ARENA_RECOMPUTE_DELAY", 10)
# Votes a voter needs before their choices are judged random or constant.
ARENA_FLAG_MIN_VOTES = envint("LIGHTBOX_ARENA_FLAG_MIN_VOTES", 20)
# Per-user limits for users in no group with limits (GroupLimits in the admin).
RATE_LIMIT_PER_MINUTE = envlimit("LIGHTBOX_RATE_LIMIT_PER_MINUTE", "60")
DAILY_QUOTA = envlimit("LIGHTBOX_DAILY_QUOTA", "1000")
MAX_CONCURRENT = envlimit("LIGHTBOX_MAX_CONCURRENT", "10")
# --- bench: benchmark runs ---
# Predictions (prompts x seeds x versions) one benchmark run may have.
BENCHMARK_MAX_PREDICTIONS = envint("LIGHTBOX_BENCHMARK_MAX_PREDICTIONS", 10000)
# USD a month on versions that run on the site's REPLICATE_API_TOKEN.
USER_MONTHLY_SPEND_CAP = envlimit("LIGHTBOX_USER_MONTHLY_SPEND_CAP", "10", Decimal)
SITE_MONTHLY_SPEND_CAP = envlimit("LIGHTBOX_SITE_MONTHLY_SPEND_CAP", "100", Decimal)
# Price per second of Replicate versions with no price of their own (USD;
# Replicate's Nvidia L40S rate when this was written), and the predict time a
# cost estimate assumes for a version that has not run yet.
REPLICATE_PRICE_PER_SECOND = Decimal(os.environ.get("LIGHTBOX_REPLICATE_PRICE_PER_SECOND", "0.000975"))
COST_ESTIMATE_SECONDS = envfloat("LIGHTBOX_COST_ESTIMATE_SECONDS", 10)
# Hosts, addresses and networks outbound requests for users (webhooks, image
# URLs) may reach although they are private, e.g. "nas.lan,192.168.1.0/24".
NETWORK_ALLOWLIST = os.environ.get("LIGHTBOX_NETWORK_ALLOWLIST", "")
# Signed media URLs the API hands out stay valid this many seconds.
MEDIA_URL_TTL = envint("LIGHTBOX_MEDIA_URL_TTL", 3600)
# Request bodies (the API's JSON, forms) and uploaded images.
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("LIGHTBOX_MAX_REQUEST_BYTES", 16 * 1024 * 1024)
UPLOAD_IMAGE_MAX_BYTES = envint("LIGHTBOX_UPLOAD_IMAGE_MAX_BYTES", 16 * 1024 * 1024)
UPLOAD_MAX_PIXELS = envint("LIGHTBOX_UPLOAD_MAX_PIXELS", 4096 * 4096)
# --- grids (issue 14) ---
# Cells (predictions: cells x versions) one grid may have; past it, refused.
GRID_MAX_CELLS = envint("LIGHTBOX_GRID_MAX_CELLS", 1000)
# --- end grids ---
# Characters per string in a prediction's input (a prompt), data: URIs aside:
# a megabyte prompt made a megabyte page wherever the prediction shows.
MAX_TEXT_LENGTH = envint("LIGHTBOX_MAX_TEXT_LENGTH", 10000)
UPLOAD_FORMATS = tuple(os.environ.get("LIGHTBOX_UPLOAD_FORMATS", "PNG,JPEG,WEBP").upper().split(","))
# Seconds a file uploaded through /v1/files lives (Replicate's: a day); the
# reconciler deletes it then.
FILE_TTL = envint("LIGHTBOX_FILE_TTL", 24 * 3600)
# Files a user may hold at once ("none": no limit): each may be
# LIGHTBOX_UPLOAD_IMAGE_MAX_BYTES, and they stay until they expire or are deleted.
FILES_PER_USER = envlimit("LIGHTBOX_FILES_PER_USER", "100")

# A bearer token that shows monitors /healthz's details (each check, backend
# addresses and errors), which anonymous visitors do not get; empty: staff only.
HEALTH_TOKEN = os.environ.get("LIGHTBOX_HEALTH_TOKEN", "")

# --- Security headers (app.security; `manage.py check --deploy` clean) ---
# No inline script or style, nothing from other origins. Media on another
# origin (S3) needs that origin in LIGHTBOX_CSP_IMG_SRC.
CONTENT_SECURITY_POLICY = os.environ.get(
    "LIGHTBOX_CSP",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: "
    + os.environ.get("LIGHTBOX_CSP_IMG_SRC", "")
    + "; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'",
)
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
# Served over HTTPS (directly or behind a proxy that says so in
# X-Forwarded-Proto): secure cookies, redirects to https and HSTS.
HTTPS = envbool("LIGHTBOX_HTTPS", "False")
if HTTPS:
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = envint("LIGHTBOX_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("LIGHTBOX_HSTS_SUBDOMAINS", "True")
    SECURE_HSTS_PRELOAD = envbool("LIGHTBOX_HSTS_PRELOAD", "True")
# Behind a proxy that terminates HTTPS: trust its X-Forwarded-Proto. (Whose
# X-Forwarded-For to believe is LIGHTBOX_TRUSTED_PROXIES.)
BEHIND_PROXY = envbool("LIGHTBOX_BEHIND_PROXY", "False")
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
# SMTP, when EMAIL_BACKEND is django.core.mail.backends.smtp.EmailBackend.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", "False")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Lightbox <lightbox@localhost>")

# Web pages.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "playground"
LOGOUT_REDIRECT_URL = "playground"
# A Server-Timing header with the view's time and SQL query count (benchmarks).
SERVER_TIMING = envbool("LIGHTBOX_SERVER_TIMING", "False")
# Anyone may browse; running needs an account unless this is on.
ANONYMOUS_RUNS = envbool("LIGHTBOX_ANONYMOUS_RUNS", "False")

# --- Accounts and throttles (app.core.throttle; README: Configuration) ---
# Who may create an account: anyone ("open"), people with an invite code from
# staff ("invite": admin, or `manage.py create_invite`), nobody ("closed").
SIGNUP = os.environ.get("LIGHTBOX_SIGNUP", "open").strip().lower()
if SIGNUP not in ("open", "invite", "closed"):
    raise ImproperlyConfigured(f"LIGHTBOX_SIGNUP is {SIGNUP!r}: it must be open, invite or closed.")
# Accounts an hour that may be made from one client address.
SIGNUPS_PER_IP_PER_HOUR = envlimit("LIGHTBOX_SIGNUPS_PER_IP_PER_HOUR", "5")
# Log-in attempts in LOGIN_WINDOW seconds from the first (app.core.throttle.login_attempt):
# per username from one client address (LIGHTBOX_LOGIN_ATTEMPTS is its old
# name), per client address, and per username from all addresses together;
# that last count skips addresses the username logged in from before, so
# failures elsewhere never lock its owner out. A successful log-in clears the
# count of its username and address.
LOGIN_ATTEMPTS_PER_USER_IP = envlimit(
    "LIGHTBOX_LOGIN_ATTEMPTS_PER_USER_IP", os.environ.get("LIGHTBOX_LOGIN_ATTEMPTS", "5")
)
LOGIN_ATTEMPTS_PER_IP = envlimit("LIGHTBOX_LOGIN_ATTEMPTS_PER_IP", "20")
LOGIN_ATTEMPTS_PER_USER = envlimit("LIGHTBOX_LOGIN_ATTEMPTS_PER_USER", "50")
LOGIN_WINDOW = envint("LIGHTBOX_LOGIN_WINDOW", 15 * 60)
# Password-reset emails an hour, per address asked for and per client address.
PASSWORD_RESETS = envlimit("LIGHTBOX_PASSWORD_RESETS", "3")
PASSWORD_RESETS_PER_IP = envlimit("LIGHTBOX_PASSWORD_RESETS_PER_IP", "10")
# Predictions an hour that visitors without an account may start from one
# client address (with LIGHTBOX_ANONYMOUS_RUNS on).
ANONYMOUS_PREDICTIONS_PER_HOUR = envlimit("LIGHTBOX_ANONYMOUS_PREDICTIONS_PER_HOUR", "20")
# Reverse proxies (addresses or networks, e.g. "127.0.0.1,10.0.0.0/8") whose
# X-Forwarded-For is believed. Empty: the client is REMOTE_ADDR, whatever the
# header says, since anyone can send it.
TRUSTED_PROXIES = [
    entry.strip() for entry in os.environ.get("LIGHTBOX_TRUSTED_PROXIES", "").split(",") if entry.strip()
]
for _proxy in TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"LIGHTBOX_TRUSTED_PROXIES: {_proxy!r} is not an address or a network.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"httpx": {"level": "WARNING"}},
}

# --- Reproducibility: bundles, re-runs, checks (docs/bundles.md) ---
# The largest bundle (zip) an import takes, upload page and /v1 alike.
BUNDLE_MAX_BYTES = envint("LIGHTBOX_BUNDLE_MAX_BYTES", 48 * 1024 * 1024)
# Two images are "close" when their mean absolute pixel difference (0 to 1) is at most this.
REPRO_CLOSE = envfloat("LIGHTBOX_REPRO_CLOSE", 0.02)
# Published predictions the beat runs again, each run of it, to check they reproduce (0: off).
REPRO_CHECK_SAMPLE = envint("LIGHTBOX_REPRO_CHECK_SAMPLE", 0)
REPRO_CHECK_INTERVAL = envint("LIGHTBOX_REPRO_CHECK_INTERVAL", 24 * 3600)
# --- Fine-tuning (trainapi) ---
# A training's images (a zip or tar, or files dropped on the Fine-tune page):
# at most so many, so many bytes in all (each image also passes the upload
# checks above: format, pixels, LIGHTBOX_UPLOAD_IMAGE_MAX_BYTES).
TRAINING_MAX_IMAGES = envint("LIGHTBOX_TRAINING_MAX_IMAGES", 100)
TRAINING_MAX_BYTES = envint("LIGHTBOX_TRAINING_MAX_BYTES", 64 * 1024 * 1024)
# Seconds a training may stay quiet before the reconciler fails it (a step of
# SDXL on a CPU is slow; diffusers' trainers log every step).
TRAINING_TIMEOUT = envint("LIGHTBOX_TRAINING_TIMEOUT", 3600)
# What a training step takes, for the estimate before a run has been measured.
TRAINING_SECONDS_PER_STEP = envfloat("LIGHTBOX_TRAINING_SECONDS_PER_STEP", 1.5)
# The account at Replicate under which trainings of Replicate bases make their
# versions (its models <owner>-<name>, created when missing).
REPLICATE_TRAINING_OWNER = os.environ.get("LIGHTBOX_REPLICATE_TRAINING_OWNER", "lightbox")
