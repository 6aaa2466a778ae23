"""StockFlow settings: everything comes from the environment (and `.env` if present).

Embedded default: with no DATABASE_URL the app uses SQLite, with no REDIS_URL the
local-memory cache and in-process (eager) Celery tasks. With both set it is the real
system. `.env.sample` documents every variable read here.
"""

from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DATABASE_URL = env.str("DATABASE_URL", default="")
REDIS_URL = env.str("REDIS_URL", default="")
EMBEDDED_DATABASE = not DATABASE_URL
EMBEDDED_REDIS = not REDIS_URL

DEBUG = env.bool("DEBUG", default=False)
if EMBEDDED_DATABASE and EMBEDDED_REDIS:
    # Only the bare-machine embedded mode may run on a well-known key.
    SECRET_KEY = env.str("SECRET_KEY", default="django-insecure-embedded-stockflow-only")
else:
    SECRET_KEY = env.str("SECRET_KEY", default="")
    if not SECRET_KEY:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment or .env, e.g. "
            "SECRET_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(50))')"
        )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_yasg",
    "users",
    "stocks",
    "events",
    "transactions",
]

MIDDLEWARE = [
    "stockflow.middleware.RequestHeadLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "stockflow.middleware.BodySizeLimitMiddleware",
    # Session, authentication and messages, for the admin and session-cookie requests only.
    "stockflow.middleware.BrowserSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Paths whose requests always get a session (BrowserSessionMiddleware): the admin's login
# page must set the session and CSRF cookies for a visitor who has none yet.
SESSION_PATHS = ("/admin/",)
# The admin checks that MIDDLEWARE names these three; BrowserSessionMiddleware runs them.
SILENCED_SYSTEM_CHECKS = ["admin.E408", "admin.E409", "admin.E410"]

ROOT_URLCONF = "stockflow.urls"
WSGI_APPLICATION = "stockflow.wsgi.application"
# HTTP and the /ws/ routes (live updates): the `ws` process, and `make run`'s embedded mode.
ASGI_APPLICATION = "stockflow.asgi.application"
AUTH_USER_MODEL = "users.User"
# The admin is the only page with a login form.
LOGIN_URL = "/admin/login/"
LOGIN_REDIRECT_URL = "/admin/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------
if EMBEDDED_DATABASE:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env.str("SQLITE_PATH", default=str(BASE_DIR / "db.sqlite3")),
            # BEGIN IMMEDIATE serialises writers, SQLite's stand-in for row locks.
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        }
    }
else:
    DATABASES = {"default": env.db_url_config(DATABASE_URL)}
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Tests and a fresh checkout serve straight from the app folders without collectstatic.
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)

DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)
# Longest request line (method, path and query string) and longest header (name and value), in
# bytes: longer is a JSON 414 / 431. gunicorn's own defaults; gunicorn.conf.py lets requests up
# to 8190 / 32768 bytes through to Django, so raise these past that only together with it.
MAX_REQUEST_LINE_BYTES = env.int("MAX_REQUEST_LINE_BYTES", default=4094)
MAX_HEADER_BYTES = env.int("MAX_HEADER_BYTES", default=8190)

# --- Cache ------------------------------------------------------------------------------
CACHE_TTL = env.int("CACHE_TTL", default=60)
CACHE_KEY_PREFIX = env.str("CACHE_KEY_PREFIX", default="stockflow")


def redis_db_url(url: str, db: int) -> str:
    """The same Redis server as `url`, on database number `db`."""
    return urlsplit(url)._replace(path=f"/{db}").geturl()


def redis_db_number(url: str) -> int:
    path = urlsplit(url).path.strip("/")
    return int(path) if path.isdigit() else 0


def redis_cache_config(url: str, key_prefix: str) -> dict:
    """django-redis on `url`: short timeouts and errors ignored, so a dead Redis degrades reads."""
    timeout = env.float("REDIS_SOCKET_TIMEOUT", default=0.5)
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": url,
        "KEY_PREFIX": key_prefix,
        "TIMEOUT": CACHE_TTL,
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": timeout,
            "SOCKET_TIMEOUT": timeout,
            "IGNORE_EXCEPTIONS": True,
        },
    }


if EMBEDDED_REDIS:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "TIMEOUT": CACHE_TTL,
        }
    }
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = True
else:
    # Broker on REDIS_URL's database, cache on the next one: they never share keys.
    CELERY_BROKER_URL = REDIS_URL
    CACHE_REDIS_URL = redis_db_url(REDIS_URL, redis_db_number(REDIS_URL) + 1)
    CACHES = {"default": redis_cache_config(CACHE_REDIS_URL, CACHE_KEY_PREFIX)}
    CELERY_TASK_ALWAYS_EAGER = False
DJANGO_REDIS_IGNORE_EXCEPTIONS = True
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True

# --- Live updates (Channels) ------------------------------------------------------------
# Services publish events after the commit (stockflow/events.py); the WebSocket consumers
# forward them. WS_MAX_TICKERS bounds the groups one /ws/quotes/ connection may join.
WS_MAX_TICKERS = env.int("WS_MAX_TICKERS", default=50)
# Open /ws/quotes/ connections per client address (as NUM_PROXIES identifies it), counted
# across the ws processes in Redis; one more is closed with 4429. 0 switches the limit off.
WS_MAX_CONNECTIONS_PER_ADDRESS = env.int("WS_MAX_CONNECTIONS_PER_ADDRESS", default=20)
# A revoked token, a deactivation or a password change closes /ws/orders/ streams at once
# (a message after the commit); should that message be lost, each stream re-checks its
# credentials this often (seconds; 0: never).
WS_AUTH_RECHECK_SECONDS = env.float("WS_AUTH_RECHECK_SECONDS", default=60.0)
# /ws/orders/ sends {"type": "heartbeat", "event": "heartbeat", "seq": <latest>} this often
# (0: never).
WS_HEARTBEAT_SECONDS = env.float("WS_HEARTBEAT_SECONDS", default=15.0)
# Origins a browser page may open a WebSocket from (Channels' patterns: `example.com`,
# `.example.com`, `https://example.com:8443`, `*`). A client that sends no Origin header
# (a script, websocat) is not a browser and is let through.
WS_ALLOWED_ORIGINS = env.list("WS_ALLOWED_ORIGINS", default=ALLOWED_HOSTS)


def redis_channel_layer_config(url: str, prefix: str) -> dict:
    """channels-redis pub/sub on `url`, with the cache's short socket timeouts.

    A group_send is one PUBLISH, which every ws process subscribed to the group receives;
    nothing is stored, so an event nobody listens to is simply gone. The list-based
    RedisChannelLayer instead blocks in BZPOPMIN for seconds per receive, which a short
    socket timeout would cut off; pub/sub reads poll, so a frozen Redis costs a publishing
    settlement one REDIS_SOCKET_TIMEOUT instead of hanging it. Pub/sub channels span Redis
    databases, so `prefix` is what keeps deployments that share a Redis apart.
    """
    timeout = env.float("REDIS_SOCKET_TIMEOUT", default=0.5)
    host = {"address": url, "socket_connect_timeout": timeout, "socket_timeout": timeout}
    return {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [host], "prefix": prefix},
    }


if EMBEDDED_REDIS:
    # Within one process only: the embedded mode serves HTTP, WebSocket and the in-process
    # tasks from one ASGI process (bin/run), so publisher and consumers share this layer.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
else:
    # Broker on REDIS_URL's database, cache on the next, the channel layer on the one after.
    CHANNEL_LAYER_REDIS_URL = redis_db_url(REDIS_URL, redis_db_number(REDIS_URL) + 2)
    CHANNEL_LAYERS = {
        "default": redis_channel_layer_config(
            CHANNEL_LAYER_REDIS_URL, env.str("CHANNEL_LAYER_PREFIX", default="stockflow")
        )
    }

# --- Celery -----------------------------------------------------------------------------
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="stockflow")
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=60)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=50)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Not a CELERY_* name: Celery would read it as a setting of its own.
VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": VISIBILITY_TIMEOUT,
    # kombu looks for expired unacked messages only every interval x throttle seconds
    # (10 x 10 by default), so a killed worker's tasks came back up to 100 s after the
    # timeout. Look every min(timeout, 10) s instead: a cheap ZRANGE per worker. (Options
    # of kombu >= 5.7; an older kombu ignores them and falls back to the 100 s sweep.)
    "unacked_restore_interval": max(1, min(VISIBILITY_TIMEOUT, 10)),
    "unacked_restore_throttle": 1,
    "socket_connect_timeout": env.float("REDIS_SOCKET_TIMEOUT", default=0.5) * 4,
    # A frozen Redis accepts connections but never answers: every read waits this long,
    # up to three times per publish (reconnects included), inside the submitting request.
    # It was 5 s (15 s per order); the worker reads BRPOP only once the socket is readable.
    "socket_timeout": env.float("REDIS_SOCKET_TIMEOUT", default=0.5),
}
# A publish while Redis is down must not hang the request: the sweeper re-enqueues later.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fixup closes the database connection before and after every task unless
# this is set; stockflow/celery.py closes it as Django does after a request instead
# (CONN_MAX_AGE, errors), so Celery's count is set beyond reach.
CELERY_DB_REUSE_MAX = 2**62
# Task events let Flower show every settlement without being asked to enable them (received,
# started, succeeded, retried, failed). The web side's "task-sent" events are off: one more
# Redis publish on every submission, for a state Flower shows for only milliseconds.
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = False

SWEEP_INTERVAL_SECONDS = env.float("SWEEP_INTERVAL_SECONDS", default=10.0)
SWEEP_PENDING_AFTER_SECONDS = env.float("SWEEP_PENDING_AFTER_SECONDS", default=5.0)
# A queued settlement for a user makes later submissions skip enqueuing another; after this
# many seconds unstarted (a lost task) they enqueue again.
SETTLE_QUEUED_MARK_SECONDS = env.int("SETTLE_QUEUED_MARK_SECONDS", default=10)
# Day orders expire at this UTC time of day (HH:MM), checked by beat every
# SWEEP_INTERVAL_SECONDS.
MARKET_CLOSE_UTC = env.str("MARKET_CLOSE_UTC", default="21:00")
# A stop or trailing-stop buy reserves its stop price x volume plus this fraction, since it
# fills at the triggering close, which may be above the stop.
STOP_BUY_COLLAR = Decimal(env.str("STOP_BUY_COLLAR", default="0.05"))
# Events (the outbox): kept this many days, then pruned by beat every EVENTS_PRUNE_INTERVAL_SECONDS.
EVENTS_RETENTION_DAYS = env.float("EVENTS_RETENTION_DAYS", default=30)
EVENTS_PRUNE_INTERVAL_SECONDS = env.float("EVENTS_PRUNE_INTERVAL_SECONDS", default=3600.0)
# Beat's sweep relays events left unrelayed this long (a process died between its commit and
# its relay request), checking every SWEEP_INTERVAL_SECONDS.
EVENTS_RELAY_SWEEP_AFTER_SECONDS = env.float("EVENTS_RELAY_SWEEP_AFTER_SECONDS", default=5.0)
# As SETTLE_QUEUED_MARK_SECONDS, for the relay of a stream.
RELAY_QUEUED_MARK_SECONDS = env.int("RELAY_QUEUED_MARK_SECONDS", default=10)
CELERY_BEAT_SCHEDULE = {
    "sweep-events": {
        "task": "events.tasks.sweep_events_task",
        "schedule": SWEEP_INTERVAL_SECONDS,
    },
    "prune-events": {
        "task": "events.tasks.prune_events_task",
        "schedule": EVENTS_PRUNE_INTERVAL_SECONDS,
    },
    "sweep-pending-transactions": {
        "task": "transactions.tasks.sweep_pending_transactions_task",
        "schedule": SWEEP_INTERVAL_SECONDS,
    },
    "expire-day-orders": {
        "task": "transactions.tasks.expire_orders_task",
        "schedule": SWEEP_INTERVAL_SECONDS,
    },
}

# Passwords of the demo accounts `seed_demo` creates. Unset: the README's well-known ones on the
# embedded default only; anywhere else a random one, printed once when the account is created.
SEED_ADMIN_PASSWORD = env.str("SEED_ADMIN_PASSWORD", default="")
SEED_DEMO_PASSWORD = env.str("SEED_DEMO_PASSWORD", default="")

# --- REST framework and Swagger -----------------------------------------------------------
PAGE_SIZE = env.int("PAGE_SIZE", default=50)
MAX_PAGE_SIZE = env.int("MAX_PAGE_SIZE", default=500)
MAX_QUOTES_PER_REQUEST = env.int("MAX_QUOTES_PER_REQUEST", default=1000)
# How far ahead of the server's clock a quote's timestamp may be (clock skew of a feed).
QUOTE_MAX_FUTURE_SECONDS = env.int("QUOTE_MAX_FUTURE_SECONDS", default=300)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "users.authentication.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["stockflow.parsers.DecimalJSONParser"],
    # JSON only, errors included (API.md), even for a browser: Swagger UI is the browsable view.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "stockflow.pagination.LimitOffsetPagination",
    "PAGE_SIZE": PAGE_SIZE,
    "EXCEPTION_HANDLER": "stockflow.exceptions.exception_handler",
    # Per client address (anonymous) or per account; 429 with Retry-After beyond them.
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        # An empty value switches that throttle off (DRF: a rate of None).
        "anon": env.str("THROTTLE_ANON", default="3000/min") or None,
        "user": env.str("THROTTLE_USER", default="12000/min") or None,
        "login_failures": env.str("THROTTLE_LOGIN_FAILURES", default="10/min") or None,
    },
    # Addresses of trusted proxies in front (X-Forwarded-For hops to trust); 0 = none.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
    "COERCE_DECIMAL_TO_STRING": True,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SWAGGER_USE_COMPAT_RENDERERS = False
SWAGGER_SETTINGS = {
    "SECURITY_DEFINITIONS": {
        "Token": {
            "type": "apiKey",
            "name": "Authorization",
            "in": "header",
            "description": "DRF token: `Token <key>`",
        }
    },
    "USE_SESSION_AUTH": False,
    "DEFAULT_INFO": "stockflow.urls.api_info",
    # Documents what the views really answer: errors, paging, self-describing fields.
    "DEFAULT_AUTO_SCHEMA_CLASS": "stockflow.schema.AutoSchema",
    "DEFAULT_GENERATOR_CLASS": "stockflow.schema.SchemaGenerator",
}

# --- HTTPS (TLS ends at the proxy; all off unless set) ----------------------------------
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
if env.bool("USE_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Logging ----------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "logfmt": {"format": "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"}
    },
    "filters": {"redact_tokens": {"()": "stockflow.logfilters.RedactTokens"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "logfmt"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django_redis": {"level": "WARNING"},
        # uvicorn (the ws process) logs every WebSocket handshake and HTTP request with its
        # query string, where a browser's `?token=` would be.
        **{
            name: {"handlers": ["console"], "filters": ["redact_tokens"], "propagate": False}
            for name in ("uvicorn.error", "uvicorn.access")
        },
    },
}

STOCKFLOW_MODE = (
    "embedded (SQLite, local-memory cache, tasks run in-process)"
    if EMBEDDED_DATABASE and EMBEDDED_REDIS
    else (
        f"{'SQLite' if EMBEDDED_DATABASE else DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}"
        f" + {'in-process tasks, local-memory cache' if EMBEDDED_REDIS else 'Redis broker/cache'}"
    )
)
