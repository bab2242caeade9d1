"""Settings, all from the environment (see README "Configuration" and .env.example).

When DATABASE_URL, CELERY_BROKER_URL or EMBEDDING_BASE_URL is unset, the matching
embedded service (devservices/) is used, so every entry point works on a fresh clone
with no further set-up. Importing this module starts nothing: the entry points (manage.py,
wsgi/asgi, the Celery app, the tests) start or reuse those services first
(config.development.start_embedded_services).
"""
from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_float, env_int, env_list, env_rate, env_str, env_url

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is false")
    SECRET_KEY = "development-only-insecure-key-do-not-use-in-production"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is false (comma-separated host names)")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# --- Backing services -------------------------------------------------------
# Production names its services; the embedded ones (devservices/, requirements-dev.txt) are for development only.
if not DEBUG and (_unset := [name for name in ("DATABASE_URL", "CELERY_BROKER_URL", "EMBEDDING_BASE_URL")
                             if not (env_str(name) or "").strip()]):
    raise ImproperlyConfigured(f"{', '.join(_unset)} must be set when DEBUG is false")
DATABASE_URL = env_url("DATABASE_URL", schemes=("postgres", "postgresql"))
if DATABASE_URL is None:
    from devservices.postgres import database_url as embedded_database_url

    DATABASE_URL = embedded_database_url()

CELERY_BROKER_URL = env_url("CELERY_BROKER_URL", schemes=("redis", "rediss"))
if CELERY_BROKER_URL is None:
    from devservices.redis import broker_url as embedded_broker_url

    CELERY_BROKER_URL = embedded_broker_url()

EMBEDDING_BASE_URL = env_url("EMBEDDING_BASE_URL", schemes=("http", "https"))
if EMBEDDING_BASE_URL is None:
    from devservices.embedding_server import MODEL_NAME as EMBEDDED_MODEL_NAME
    from devservices.embedding_server import base_url as embedded_embedding_url

    EMBEDDING_BASE_URL = embedded_embedding_url()
    EMBEDDING_MODEL = env_str("EMBEDDING_MODEL") or EMBEDDED_MODEL_NAME
else:
    EMBEDDING_MODEL = env_str("EMBEDDING_MODEL") or "Qwen/Qwen3-Embedding-0.6B"
EMBEDDING_API_KEY = env_str("EMBEDDING_API_KEY") or "not-needed"
# None: the model profile's native dimension.
EMBEDDING_DIMENSIONS = env_int("EMBEDDING_DIMENSIONS", None, minimum=32, maximum=4096)
EMBEDDING_TIMEOUT_SECONDS = env_float("EMBEDDING_TIMEOUT_SECONDS", 30.0, minimum=0.1)
EMBEDDING_MAX_RETRIES = env_int("EMBEDDING_MAX_RETRIES", 4, minimum=0)
EMBEDDING_BATCH_SIZE = env_int("EMBEDDING_BATCH_SIZE", 256, minimum=1)
EMBEDDING_MAX_CONCURRENCY = env_int("EMBEDDING_MAX_CONCURRENCY", 4, minimum=1)

# Optional second stage of FAQ matching: a /v1/rerank endpoint (Qwen3-Reranker on SGLang, or any server
# speaking the same API). Unset: off, the default; see the README for what it was measured to do.
RERANKER_BASE_URL = env_url("RERANKER_BASE_URL", schemes=("http", "https"))
RERANKER_MODEL = env_str("RERANKER_MODEL") or "Qwen/Qwen3-Reranker-0.6B"
RERANKER_API_KEY = env_str("RERANKER_API_KEY") or "not-needed"
RERANKER_TIMEOUT_SECONDS = env_float("RERANKER_TIMEOUT_SECONDS", 2.0, minimum=0.1)
RERANKER_CANDIDATES = env_int("RERANKER_CANDIDATES", 5, minimum=2, maximum=50)

DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60))}
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int("DATABASE_CONNECT_TIMEOUT", 5)
# Parallel test runs (several checkouts on one server) each need their own test database.
DATABASES["default"]["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME")} if env_str("TEST_DATABASE_NAME") else {}

# --- Django -----------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "embeddings",
    "verifier",
    "faq",
    "sample_data",
]

MIDDLEWARE = [
    # First: answers /healthz before host checks and the https redirect, which a container probe cannot satisfy.
    "embeddings.health.LivenessProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "config.middleware.DatabaseUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The page language: the switch's cookie, else Accept-Language, else LANGUAGE_CODE (needs sessions, before common).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: refuses a locked-out client's admin login.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
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
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# The public pages' languages (catalogues in locale/, compiled .mo files committed).
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE") or "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Production serves collected static files itself (whitenoise): compressed, with hashed names cached for a year.
# Development and tests keep the plain storage, which needs no collectstatic.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage" if DEBUG
                    else "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_ROOT = Path(env_str("MEDIA_ROOT") or BASE_DIR / "var" / "media")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "admin:login"

# Uploads: files above this stream to disk; requests above the hard limit are refused.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# The size limit is enforced while the request body streams in (verifier.uploads), before the rest is read.
FILE_UPLOAD_HANDLERS = [
    "verifier.uploads.SizeLimitedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 10 * 1024 * 1024)
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 200 * 1024 * 1024)

EMAIL_BACKEND = env_str("EMAIL_BACKEND") or "django.core.mail.backends.console.EmailBackend"
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH") or str(BASE_DIR / "var" / "mail")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL") or "support@localhost"

CACHES = {
    "default": {
        # Django's Redis cache, keeping one Redis client per server instead of one per call (config.cache).
        "BACKEND": "config.cache.RedisCache",
        "LOCATION": env_str("CACHE_URL") or CELERY_BROKER_URL.rsplit("/", 1)[0] + "/1",
        # A Redis that does not answer must not hold requests: rate limits then count in memory (config.throttling).
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}

# --- Clients, rate limits, login lockout (README "Security") -------------------------------------------
# Proxies in front of the service that append the client's address to X-Forwarded-For (0: none, the header
# is ignored). The client is the N-th address from the right (config.client_address).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0, maximum=10)
# JSON request bodies nested deeper than this are refused with 400 (config.parsers).
JSON_MAX_DEPTH = env_int("JSON_MAX_DEPTH", 32, minimum=4, maximum=200)
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# The admin login: after AXES_FAILURE_LIMIT failures from one client address, refused (429) for the cool-off.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1) / 60  # hours
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_CLIENT_IP_CALLABLE = "config.client_address.client_address"
AXES_RESET_ON_SUCCESS = True

# --- Security in production ------------------------------------------------------
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Container probes speak plain http to the container itself (LivenessProbeMiddleware answers them first).
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# --- API ------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "config.authentication.SqlTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PARSER_CLASSES": [
        "config.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "config.api_errors.api_exception_handler",
    # One mechanism for every limit (config.throttling); views add their own scopes.
    "DEFAULT_THROTTLE_CLASSES": ["config.throttling.AnonymousThrottle", "config.throttling.PerUserThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "public_inquiries": env_rate("PUBLIC_RATE_LIMIT", "30/minute"),
        # The public form /ask/: questions one client may post a minute.
        "inquiry_form": f"{env_int('FAQ_INQUIRIES_PER_MINUTE', 10, minimum=1)}/minute",
        "anon": env_rate("ANON_RATE_LIMIT", "60/minute"),
        "user": env_rate("USER_RATE_LIMIT", "600/minute"),
        "faq_match": env_rate("FAQ_MATCH_RATE_LIMIT", "120/minute"),
        "faq_pairs": env_rate("FAQ_PAIRS_RATE_LIMIT", "120/minute"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Semantic customs and FAQ service",
    "DESCRIPTION": "Declaration verification by HS code and FAQ matching by meaning.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the installed package, not a CDN: /api/docs/ works on a server without internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Celery -------------------------------------------------------------------
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 30 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 25 * 60)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Work left in 'processing' longer than this is re-queued by the sweeper.
STUCK_WORK_TIMEOUT_SECONDS = env_int("STUCK_WORK_TIMEOUT_SECONDS", 600, minimum=10)
# Verification tasks queued for a large batch: as many as the worker pool's processes (compose runs 4), so
# that every process takes a share; a task beyond them finds nothing pending and ends at once.
VERIFICATION_PARALLEL_TASKS = env_int("VERIFICATION_PARALLEL_TASKS", 4, minimum=1, maximum=64)
# HS recommendation: HNSW candidate list per description and per script index, the pipeline's main cost.
# hsbench dev (zh+en, CPU model, one index per script): 200 gave top-1 0.762 / 0.597 at 2 / 4 digits, within
# 0.3 points of exact search; 100 gave 0.754 / 0.590. Pipeline at 100,000 references (python -m bench pipeline,
# lexical vectors): 340 items/s at 200, 447 at 100, 599 at 40.
HS_SEARCH_EF = env_int("HS_SEARCH_EF", 200, minimum=40, maximum=1000)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL") or "INFO"},
    # One line per HTTP request to the embedding endpoint is noise at INFO.
    "loggers": {"httpx": {"level": "WARNING"}},
}
