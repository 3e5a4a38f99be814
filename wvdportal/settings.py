"""Settings for the control plane, read from ``WVD_*`` environment variables (see README)."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from core.environment import (
    env_bool,
    env_choice,
    env_data_dir,
    env_database,
    env_directory,
    env_int,
    env_list,
    env_listen,
    env_networks,
    env_optional_listen,
    env_oidc,
    env_redis_url,
    env_retired,
    env_secret_key,
    env_str,
    gateway_addresses,
    web_origins,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = env_data_dir("WVD_DATA_DIR", BASE_DIR / "data")

SECRET_KEY = env_secret_key("WVD_SECRET_KEY", DATA_DIR)
DEBUG = env_bool("WVD_DEBUG", False)
ALLOWED_HOSTS = env_list("WVD_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
WEB_LISTEN = env_listen("WVD_WEB_LISTEN", "127.0.0.1:8000")
CSRF_TRUSTED_ORIGINS = env_list("WVD_CSRF_TRUSTED_ORIGINS", [])

# --- The web side over HTTPS (docs/deploy.md) ------------------------------------------------------
# `serve` terminates TLS for its web listener unless WVD_WEB_TLS=off (or `serve --web-plain`), which is
# for running behind a TLS-terminating proxy: the web side is HTTPS to its users either way.
WEB_TLS = env_bool("WVD_WEB_TLS", True)
# The origins of the portal's pages: the browser client's WebSocket to the gateway (RDCleanPath) must come
# from one of them. Default: the CSRF-trusted origins and the web listener's scheme and port on every
# concrete WVD_ALLOWED_HOSTS name (core.environment.web_origins); set it when a proxy publishes the portal
# under another scheme or port.
WEB_ORIGINS = web_origins("WVD_WEB_ORIGINS", ALLOWED_HOSTS, WEB_LISTEN, WEB_TLS, CSRF_TRUSTED_ORIGINS)
# The web listener's certificate (with any intermediates after it) and key; unset: the gateway-tls
# certificate our CA issues for the public names (WVD_GATEWAY_PUBLIC_HOST, WVD_GATEWAY_ALIASES, ...).
WEB_CERT_FILE = env_str("WVD_WEB_CERT_FILE")
WEB_KEY_FILE = env_str("WVD_WEB_KEY_FILE")
if bool(WEB_CERT_FILE) != bool(WEB_KEY_FILE):
    raise ImproperlyConfigured("set both WVD_WEB_CERT_FILE and WVD_WEB_KEY_FILE, or neither")
# Cookies never travel in clear text: the web side is HTTPS, at `serve` or at the proxy in front of it.
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
# A proxy that terminated TLS says so in X-Forwarded-Proto; core.proxyheaders drops the header unless the
# peer is one of WVD_TRUSTED_PROXIES, so nobody else can make a plain request look secure.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Browsers remember to use HTTPS for this long (sent on HTTPS responses only; 0: not sent). Browsers
# ignore it for IP addresses; for a host name it holds for every port of that name.
SECURE_HSTS_SECONDS = env_int("WVD_HSTS_SECONDS", 365 * 24 * 3600, minimum=0, maximum=2 * 365 * 24 * 3600)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# django-csp: the portal, the user page and the admin load scripts and styles from our own static files
# only (no inline script or style anywhere in templates/). The API docs page relaxes it for itself
# (wvdportal/urls.py). connect-src 'self' covers the live-update WebSocket of the same origin.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

INSTALLED_APPS = [
    "daphne",
    # django.contrib.admin, its site recording every add, change and delete in the audit log (core/adminsite.py).
    "core.adminconfig.AuditedAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    # Before core: its failed-sign-in log reads what axes has just counted (core.throttle).
    "axes",
    "core",
    "broker",
    "feed",
    "hostagent",
    "gateway",
    "portal",
]

MIDDLEWARE = [
    # First: X-Forwarded-Proto is dropped unless a trusted proxy sent it, before anything reads is_secure().
    "core.proxyheaders.TrustedProxyHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Who and from where for the audit log (core/audit.py), and the request id every event of a request shares.
    "core.audit.AuditRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a sign-in the throttle refused into its 429 (Django's admin login has no other way).
    "core.throttle.SignInThrottleMiddleware",
]
# axes.W002 asks for axes' middleware by name; core.throttle.SignInThrottleMiddleware stands in for it.
SILENCED_SYSTEM_CHECKS = ["axes.W002"]

AUTHENTICATION_BACKENDS = [
    # First: a locked-out name and address are refused before any password is checked.
    "core.throttle.SignInThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "wvdportal.urls"
ASGI_APPLICATION = "wvdportal.asgi.application"

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
                "portal.access.template_context",  # portal_user: may the signed-in user use the portal
            ],
        },
    },
]

# PostgreSQL connections are kept by the threads that live as long as the process (Channels' database thread,
# the gateway's worker threads): opening one per call was most of a heartbeat's cost (bench/RESULTS.md).
# A web request's thread ends with the request, and so does its connection (core/dbconnections.py).
DATABASE_CONN_MAX_AGE = env_int("WVD_DATABASE_CONN_MAX_AGE", 300, minimum=0)
DATABASES = {"default": env_database("WVD_DATABASE_URL", DATA_DIR / "wvd.sqlite3",
                                     conn_max_age=DATABASE_CONN_MAX_AGE)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise expects it even when it serves from the finders
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the apps' static folders: `make run` needs no collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
# The vendored browser RDP client lives in folders named with its pinned version (feed/webclientvendor.py),
# so its URL changes whenever its bytes may: browsers keep it for good instead of re-checking 6 MB.
WHITENOISE_IMMUTABLE_FILE_TEST = r"/feed/vendor/[a-z0-9-]+-\d+\.\d+\.\d+/[^/]+$"

# --- Redis: channel layer and Celery broker, or the embedded default without it -------------
REDIS_URL = env_redis_url("WVD_REDIS_URL")
# Keeps deployments (or test planes) that share one Redis apart: channel groups, cache keys, task queue.
REDIS_NAMESPACE = env_str("WVD_REDIS_NAMESPACE", "wvd") or "wvd"
# Connections to Redis each process's channel layer opens at most (per event loop); calls beyond wait for one.
REDIS_CHANNEL_CONNECTIONS = env_int("WVD_REDIS_CHANNEL_CONNECTIONS", 100, minimum=2, maximum=10000)

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # channels_redis's layer with a pool that waits for a free connection instead of refusing the call.
            "BACKEND": "core.channellayer.RedisChannelLayer",
            # redis-py times reads out after 5 s, exactly as long as channels_redis's blocking wait for
            # a message: an idle consumer would race it and crash. Give reads room.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}], "prefix": f"{REDIS_NAMESPACE}:asgi",
                       "max_connections": REDIS_CHANNEL_CONNECTIONS},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Shared counters (sign-in failures, nonces) must be seen by every process: Redis when there is one.
# The sign-in throttle has a cache of its own, so that failures neither evict nor are evicted by icons and
# nonces; in memory it is bounded (100,000 counters, the oldest third dropped when full).
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                    "KEY_PREFIX": REDIS_NAMESPACE},
        "signin": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                   "KEY_PREFIX": f"{REDIS_NAMESPACE}:signin"},
    }
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "signin": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "signin",
                   "OPTIONS": {"MAX_ENTRIES": 100_000}},
    }
    # axes warns that a per-process cache is not shared; without Redis there is one process (`serve`,
    # tasks in-process), so it is.
    SILENCED_SYSTEM_CHECKS.append("axes.W001")

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or None
# Without Redis there is no worker: tasks run in the calling process, exceptions included.
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = f"{REDIS_NAMESPACE}.tasks"

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so an anonymous request gets 401 with a WWW-Authenticate challenge.
        "core.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["core.permissions.HasRole"],
    "DEFAULT_FILTER_BACKENDS": [
        "core.api.filters.ReadableFilterBackend",  # filters by a related object: what the caller may pick
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    # A JSON parser that answers 400 (not 500) to pathologically nested input, for every API view.
    "DEFAULT_PARSER_CLASSES": [
        "core.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "core.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.exceptions.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "WVD control plane API",
    "DESCRIPTION": "Workspaces, host pools, application groups, session hosts, connections.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Domain settings ----------------------------------------------------------------------------
REGISTRATION_TOKEN_DEFAULT_HOURS = env_int("WVD_REGISTRATION_TOKEN_HOURS", 24, minimum=1, maximum=24 * 30)
API_TOKEN_DEFAULT_LIFETIME = timedelta(hours=env_int("WVD_API_TOKEN_HOURS", 1, minimum=1, maximum=24 * 365))

# --- This instance as a gateway -----------------------------------------------------------------
GATEWAY_LISTEN = env_listen("WVD_GATEWAY_LISTEN", "127.0.0.1:8443")
# WVD_GATEWAY_PUBLIC_HOST/PORT, WVD_GATEWAY_TLS_NAMES and WVD_FEED_PUBLISHER_ID default to the listen
# address (`serve --gateway-listen` moves them along): core.environment.gateway_addresses.
_GATEWAY_ADDRESSES = gateway_addresses(GATEWAY_LISTEN, WEB_LISTEN)
GATEWAY_PUBLIC_HOST = _GATEWAY_ADDRESSES["GATEWAY_PUBLIC_HOST"]
GATEWAY_PUBLIC_PORT = _GATEWAY_ADDRESSES["GATEWAY_PUBLIC_PORT"]
# More names clients reach the gateway (and the web side) by, comma-separated DNS names or IP addresses:
# the certificate issued by our CA names them all.
GATEWAY_ALIASES = _GATEWAY_ADDRESSES["GATEWAY_ALIASES"]
GATEWAY_REGION = env_str("WVD_GATEWAY_REGION")
# The gateway's TLS certificate and key files; unset: a gateway-tls certificate issued by our CA.
GATEWAY_CERT_FILE = env_str("WVD_GATEWAY_CERT_FILE")
GATEWAY_KEY_FILE = env_str("WVD_GATEWAY_KEY_FILE")
# Where session hosts' agents dial this very instance's RD Gateway listener (the agent link shares it
# with RDP clients); unset: https://<public host>:<public port>. The gateway app's system check
# refuses a value the agent could not use (gateway/checks.py).
GATEWAY_RELAY_URL = env_str("WVD_GATEWAY_RELAY_URL")
# Unset: `serve` names the instance after the address its RD Gateway listens on.
GATEWAY_INSTANCE_NAME = env_str("WVD_GATEWAY_INSTANCE_NAME")
# How long a client waits for its session host to dial in (FreeRDP 2.11 waits at least 20 s).
GATEWAY_HOST_ARRIVAL_TIMEOUT = env_int("WVD_GATEWAY_HOST_ARRIVAL_TIMEOUT", 15, minimum=1, maximum=120)
# Unauthenticated connections (gateway/preauth.py): seconds from the accept until the client's ticket is
# admitted (or the agent has proved its host), whatever it sends meanwhile; how many may wait at once from
# one client address and in all (one more is answered 503 at once, without any database work).
GATEWAY_PREAUTH_SECONDS = env_int("WVD_GATEWAY_PREAUTH_SECONDS", 20, minimum=1, maximum=300)
GATEWAY_PREAUTH_MAX_PER_ADDRESS = env_int("WVD_GATEWAY_PREAUTH_MAX_PER_ADDRESS", 32, minimum=1, maximum=100_000)
GATEWAY_PREAUTH_MAX = env_int("WVD_GATEWAY_PREAUTH_MAX", 2048, minimum=1, maximum=1_000_000)
# Seconds between this instance's "still alive" updates to its GatewayInstance row.
GATEWAY_INSTANCE_HEARTBEAT = env_int("WVD_GATEWAY_INSTANCE_HEARTBEAT", 30, minimum=1, maximum=3600)
# A host slot reserved for a connection is freed when the host has not arrived by then; it must
# outlast the gateway's own wait.
CONNECTION_RESERVATION_TIMEOUT = timedelta(
    seconds=env_int("WVD_CONNECTION_RESERVATION_SECONDS", 30, minimum=5, maximum=600)
)
# Connection records older than this (by when they ended) are deleted by a daily task; open ones are kept.
CONNECTION_RETENTION = timedelta(days=env_int("WVD_CONNECTION_RETENTION_DAYS", 90, minimum=1, maximum=3650))
# Audit events older than this are deleted by an hourly task, in batches (core/audit.py, docs/audit.md).
AUDIT_RETENTION = timedelta(days=env_int("WVD_AUDIT_RETENTION_DAYS", 365, minimum=1, maximum=36500))
if CONNECTION_RESERVATION_TIMEOUT.total_seconds() < GATEWAY_HOST_ARRIVAL_TIMEOUT:
    raise ImproperlyConfigured(
        "WVD_CONNECTION_RESERVATION_SECONDS must be at least WVD_GATEWAY_HOST_ARRIVAL_TIMEOUT"
    )

# A worker that dies (SIGKILL, out of memory, its machine lost) leaves the tasks it had taken unacknowledged
# in Redis (acks late). They go back to the queue once older than the visibility timeout, which every worker
# looks for each second: half the client's wait for its host, so a connection still waiting is placed by the
# worker that returns (or by another one) instead of after Redis's default hour. A task still running past
# it may run twice, which every task here allows (placement and the sweeps are idempotent). A pool process
# that dies alone (the worker lives on) hands its task back at once.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": max(GATEWAY_HOST_ARRIVAL_TIMEOUT / 2, 5),
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}

# --- Logs and metrics (core/logcontext.py, core/metrics.py, docs/metrics.md) ---------------------------
# WVD_LOG_FORMAT=json: one JSON object per line, with activity_id on every line about a connection; the
# plain format is the default. WVD_METRICS_LISTEN=host:port: `serve` and the Celery worker expose
# /metrics on that separate listener (never on the web listener); unset: no metrics listener.
LOG_FORMAT = env_choice("WVD_LOG_FORMAT", "plain", ("plain", "json"))
METRICS_LISTEN = env_optional_listen("WVD_METRICS_LISTEN")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "core.logcontext.JsonFormatter"},
    },
    "filters": {"activity": {"()": "core.logcontext.ActivityFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["activity"]}},
    "root": {"handlers": ["console"], "level": env_str("WVD_LOG_LEVEL", "INFO").upper() or "INFO"},
    # axes logs each failure with the user name and address masked; core.throttle logs each one once, unmasked
    # (no password, no token).
    "loggers": {"django.db.backends": {"level": "INFO"}, "axes": {"level": "ERROR"}},
}
# The Celery worker keeps its own log format unless JSON is asked for: then it logs through LOGGING too.
CELERY_WORKER_HIJACK_ROOT_LOGGER = LOG_FORMAT != "json"

# --- Certificate authority and tickets (core/ca.py, core/tickets.py) ---------------------------------
# Lifetimes in days; a leaf never outlives the root. Renewal starts CERTIFICATE_RENEWAL_WINDOW before
# expiry, so every lifetime must be longer than the window or certificates would renew in a loop.
CA_VALIDITY = timedelta(days=env_int("WVD_CA_DAYS", 3650, minimum=365, maximum=36500))
CERTIFICATE_LIFETIMES = {
    "feed-signing": timedelta(days=env_int("WVD_CERT_FEED_SIGNING_DAYS", 365, minimum=2, maximum=3650)),
    "host-agent": timedelta(days=env_int("WVD_CERT_HOST_AGENT_DAYS", 90, minimum=2, maximum=3650)),
    "host-rdp": timedelta(days=env_int("WVD_CERT_HOST_RDP_DAYS", 90, minimum=2, maximum=3650)),
    "gateway-tls": timedelta(days=env_int("WVD_CERT_GATEWAY_TLS_DAYS", 90, minimum=2, maximum=3650)),
}
CERTIFICATE_RENEWAL_WINDOW = timedelta(days=env_int("WVD_CERT_RENEWAL_DAYS", 30, minimum=1, maximum=3649))
if CERTIFICATE_RENEWAL_WINDOW >= min(CERTIFICATE_LIFETIMES.values()):
    raise ImproperlyConfigured(
        f"WVD_CERT_RENEWAL_DAYS={CERTIFICATE_RENEWAL_WINDOW.days} must be shorter than every certificate "
        f"lifetime (the shortest is {min(CERTIFICATE_LIFETIMES.values()).days} days)"
    )
# Subjects of the server-side certificates load_server_credentials() issues by itself; the first
# gateway name (the public host, unless WVD_GATEWAY_TLS_NAMES says otherwise) is the common name.
FEED_SIGNING_COMMON_NAME = env_str("WVD_FEED_SIGNING_NAME", "WVD Feed Signing") or "WVD Feed Signing"
GATEWAY_TLS_NAMES = _GATEWAY_ADDRESSES["GATEWAY_TLS_NAMES"]
CONNECTION_TICKET_LIFETIME = timedelta(
    minutes=env_int("WVD_CONNECTION_TICKET_MINUTES", 8 * 60, minimum=1, maximum=7 * 24 * 60)
)
# The browser client's single-use ticket (core.tickets.issue_web_ticket): the page mints one per click
# and the client presents it within seconds.
WEB_TICKET_LIFETIME = timedelta(seconds=env_int("WVD_WEB_TICKET_SECONDS", 60, minimum=5, maximum=600))

# --- Host agent channel (hostagent/) ----------------------------------------------------------------
# Agents send a heartbeat every HEARTBEAT_INTERVAL seconds; a host that misses MISSED_HEARTBEATS in a
# row is marked Unavailable by hostagent.tasks.mark_missed_heartbeats, which runs once per interval.
HEARTBEAT_INTERVAL = env_int("WVD_HEARTBEAT_INTERVAL", 30, minimum=1, maximum=3600)
MISSED_HEARTBEATS = env_int("WVD_MISSED_HEARTBEATS", 3, minimum=1, maximum=100)
# Hellos (certificate check, signature, channel record) one instance works on at once: the rest wait for a turn,
# within the agent's 15 s to say hello, so a fleet reconnecting at once cannot fill the database thread that
# every heartbeat needs (hostagent/consumers.py).
HOST_HELLOS_IN_FLIGHT = env_int("WVD_HOST_HELLOS_IN_FLIGHT", 4, minimum=1, maximum=1000)

# --- The feed and client sign-in (feed/, core/signin.py) ---------------------------------------------
# The user's own login page (templates/registration/login.html); the admin keeps /admin/login/.
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
# The MS-TSWP <Publisher>: its ID must be globally unique and stable (a GUID or this server's FQDN);
# resource IDs and every .rdp file's `workspace id` derive from it. The name is what clients show
# when a user's resources come from more than one workspace (with one, the workspace's name is used).
FEED_PUBLISHER_ID = _GATEWAY_ADDRESSES["FEED_PUBLISHER_ID"]
FEED_PUBLISHER_NAME = env_str("WVD_FEED_PUBLISHER_NAME", "Remote Desktop") or "Remote Desktop"

# --- OIDC sign-in (core/oidc.py, docs/oidc.md) ------------------------------------------------------------
# WVD_OIDC_ISSUER and the rest (core.environment.env_oidc); unset: no OIDC sign-in, no button, no URLs. The
# backend only finds the users signed in through the provider again (the callback signs them in); the
# provider's endpoints and keys come from its discovery document when someone signs in.
OIDC = env_oidc()
if OIDC:
    AUTHENTICATION_BACKENDS.append("core.oidc.OidcBackend")

# --- The sign-in throttle (core/throttle.py, django-axes) ----------------------------------------------
# Every place a secret is tried (the admin login, the user page's login, POST /api/v1/auth/token/, host
# registration) counts failures per name (user name, or registration token's hash) and client address
# together; at WVD_SIGNIN_MAX_FAILURES that pair is refused (429) for WVD_SIGNIN_FAILURE_WINDOW seconds
# from its last failure. The right password from another address still signs in.
env_retired("WVD_SIGNIN_MAX_FAILURES_PER_USER", "failures count per user name and client address together; "
            "use WVD_SIGNIN_MAX_FAILURES")
env_retired("WVD_SIGNIN_MAX_FAILURES_PER_ADDRESS", "an address alone is never locked out; "
            "use WVD_SIGNIN_MAX_FAILURES (per user name and client address)")
AXES_FAILURE_LIMIT = env_int("WVD_SIGNIN_MAX_FAILURES", 5, minimum=1, maximum=1000)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("WVD_SIGNIN_FAILURE_WINDOW", 15 * 60, minimum=10, maximum=24 * 3600))
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"  # counters that expire, not a database row per failure
AXES_CACHE = "signin"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_CALLABLE = "core.throttle.throttle_name"
AXES_CLIENT_IP_CALLABLE = "core.throttle.throttle_address"
AXES_RESET_ON_SUCCESS = True
# An attempt while locked out counts too and starts the wait again: Retry-After is then the whole cool-off.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = True
AXES_ENABLE_ADMIN = False  # the cache handler keeps no records to show
# Addresses or CIDR networks of the reverse proxies in front of `serve`: when the peer is one of them, the
# client is read from X-Forwarded-For (core/clientaddress.py). Empty: the peer is the client.
TRUSTED_PROXIES = env_networks("WVD_TRUSTED_PROXIES")

# --- Periodic work: Celery beat, or `serve`'s in-process timers without Redis -------------------------
CELERY_BEAT_SCHEDULE = {
    "renew-expiring-certificates": {
        "task": "wvdportal.tasks.renew_expiring_certificates",
        "schedule": timedelta(hours=1),
    },
    "purge-expired-ticket-revocations": {
        "task": "wvdportal.tasks.purge_expired_ticket_revocations",
        "schedule": timedelta(hours=1),
    },
    "hostagent-mark-missed-heartbeats": {
        "task": "hostagent.tasks.mark_missed_heartbeats",
        "schedule": timedelta(seconds=HEARTBEAT_INTERVAL),
    },
    "hostagent-renew-host-certificates": {
        "task": "hostagent.tasks.renew_host_certificates",
        "schedule": timedelta(hours=1),
    },
    "broker-expire-stale-reservations": {
        "task": "broker.tasks.expire_stale_reservations",
        "schedule": timedelta(seconds=10),
    },
    "broker-purge-old-connections": {
        "task": "broker.tasks.purge_old_connections",
        "schedule": timedelta(hours=1),
    },
    "purge-old-audit-events": {
        "task": "wvdportal.tasks.purge_old_audit_events",
        "schedule": timedelta(hours=1),
    },
}

# --- Lost gateway instances (broker.gateways.sweep_lost_instances) ------------------------------------
# An instance that did not refresh its row while another refreshed its own without a gap for
# WVD_GATEWAY_INSTANCE_MISSED_HEARTBEATS of its heartbeats (WVD_GATEWAY_INSTANCE_HEARTBEAT) is taken for dead: beat (or
# the embedded default's in-process timers) ends its open connections with ConnectionBrokenGatewayInstanceLost,
# checking once per heartbeat.
GATEWAY_INSTANCE_MISSED_HEARTBEATS = env_int("WVD_GATEWAY_INSTANCE_MISSED_HEARTBEATS", 3, minimum=2, maximum=100)
GATEWAY_INSTANCE_LOST_AFTER = timedelta(seconds=GATEWAY_INSTANCE_HEARTBEAT * GATEWAY_INSTANCE_MISSED_HEARTBEATS)
CELERY_BEAT_SCHEDULE["broker-sweep-lost-gateway-instances"] = {
    "task": "broker.tasks.sweep_lost_gateway_instances",
    "schedule": timedelta(seconds=GATEWAY_INSTANCE_HEARTBEAT),
}

# --- Directory sign-in (core/directory.py, docs/directory.md) ------------------------------------------
# WVD_LDAP_URI and the rest (core.environment.env_directory); unset: no directory sign-in at all. The
# directory's backend comes after ModelBackend, so a local admin signs in without asking the directory
# (and while it is down); a beat task refreshes directory users' groups every WVD_LDAP_SYNC_MINUTES.
DIRECTORY = env_directory()
if DIRECTORY:
    AUTHENTICATION_BACKENDS.append("core.ldapdirectory.DirectoryBackend")
    CELERY_BEAT_SCHEDULE["core-sync-directory-users"] = {
        "task": "core.tasks.sync_directory_users",
        "schedule": timedelta(minutes=DIRECTORY["SYNC_MINUTES"]),
    }
