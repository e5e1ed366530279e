"""Django settings of the dashboard: one module, configured from the environment.

Owns every security setting of the web app (password hashing, lockout, sessions, headers, the
Content-Security-Policy, multi-factor and single sign-on) and where the app's own database and
the published read models are.  Nothing here is a secret: the secret key is generated on first use
into the data home (`<home>/dashboard/secret_key`, mode 0600) unless
`JOINEDUP_DASHBOARD_SECRET_KEY` is set.

Environment (all optional):

* `JOINEDUP_HOME`: the data home (read models under `warehouse/`, the app's files under
  `dashboard/`);
* `JOINEDUP_DASHBOARD_DATABASE_URL`: `postgresql://user:password@host:port/name` for PostgreSQL;
  default SQLite at `<home>/dashboard/app.sqlite3`;
* `JOINEDUP_DASHBOARD_HTTPS=1`: behind TLS (secure cookies, HSTS, redirect to https);
* `JOINEDUP_DASHBOARD_ALLOWED_HOSTS`: comma-separated host names (default localhost names);
* `JOINEDUP_DASHBOARD_IDLE_MINUTES` (default 30) and `JOINEDUP_DASHBOARD_MAX_HOURS` (default 10);
* `JOINEDUP_OIDC_*`: single sign-on through the council's OpenID Connect provider
  (docs/dashboard.md); off unless `JOINEDUP_OIDC_CLIENT_ID` is set.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

from joinedup.config import Settings

BASE_DIR = Path(__file__).resolve().parent
PIPELINE = Settings.from_env()
HOME = PIPELINE.home
APP_DIR = HOME / "dashboard"


def _env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, "1" if default else "0").strip().lower() in ("1", "true", "yes")


def _secret_key() -> str:
    env = os.environ.get("JOINEDUP_DASHBOARD_SECRET_KEY")
    if env:
        return env
    path = APP_DIR / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


def _database() -> dict:
    url = os.environ.get("JOINEDUP_DASHBOARD_DATABASE_URL", "").strip()
    if not url:
        APP_DIR.mkdir(parents=True, exist_ok=True)
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(APP_DIR / "app.sqlite3"),
            # one writer at a time; wait for it rather than fail under concurrent users
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    u = urlparse(url)
    if u.scheme not in ("postgres", "postgresql"):
        raise ValueError(
            "JOINEDUP_DASHBOARD_DATABASE_URL: only postgresql://user@host:port/name is supported"
        )
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(u.path.lstrip("/")),
        "USER": unquote(u.username or ""),
        "PASSWORD": unquote(u.password or ""),
        "HOST": u.hostname or "",
        "PORT": str(u.port or ""),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


SECRET_KEY = _secret_key()
DEBUG = _env_bool("JOINEDUP_DASHBOARD_DEBUG")
HTTPS = _env_bool("JOINEDUP_DASHBOARD_HTTPS")
ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get(
        "JOINEDUP_DASHBOARD_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver"
    ).split(",")
    if h.strip()
]

#: the published read models the app reads (never the warehouse)
READ_MODELS = {
    "analysts": HOME / "warehouse" / "published_analysts.duckdb",
    "planners": HOME / "warehouse" / "published_planners.duckdb",
    "engineers": HOME / "warehouse" / "published_engineers.duckdb",
}
#: the pipeline's small-number threshold (what the planners' pages say is suppressed)
SMALL_NUMBER_THRESHOLD = int(PIPELINE.small_number_threshold)
#: files an engineer may open from the hub: validation Data Docs, model cards
DATA_DOCS_DIR = PIPELINE.outputs_dir / "validation" / "data_docs"
MODELS_DIR = PIPELINE.models_dir
#: the linkage unit's aggregate linkage report, when this hub can see it (the embedded default)
LINKAGE_REPORT = PIPELINE.for_unit("linkage").outputs_dir / "linkage" / "report.html"
#: decisions on uncertain links are written here as files for the linkage unit
LINK_DECISIONS_OUTBOX = PIPELINE.dashboard_outbox
#: in the embedded default the outbox is delivered straight into the linkage unit's inbox
LINK_DECISIONS_INBOX = (
    None if _env_bool("JOINEDUP_DASHBOARD_NO_DELIVERY") else PIPELINE.review_decisions_inbox
)
PAGE_SIZE = 50

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "axes",
    "csp",
    "mozilla_django_oidc",
    "dashboard.apps.DashboardConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "dashboard.middleware.SessionLimitsMiddleware",
    "dashboard.middleware.SecondFactorMiddleware",
    "dashboard.middleware.NoStoreMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "dashboard.middleware.PermissionsPolicyMiddleware",
    "dashboard.middleware.SnapshotUnavailableMiddleware",
    # last, as django-axes asks: it turns a lockout into the lockout response
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"
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
                "dashboard.roles.context",
            ],
        },
    },
]

DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# -- authentication ------------------------------------------------------------------------
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
OIDC_ENABLED = bool(os.environ.get("JOINEDUP_OIDC_CLIENT_ID"))
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
if OIDC_ENABLED:
    AUTHENTICATION_BACKENDS.append("dashboard.oidc.RoleMappingOIDCBackend")
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# mozilla-django-oidc: the council's provider (docs/dashboard.md, "Single sign-on")
OIDC_RP_CLIENT_ID = os.environ.get("JOINEDUP_OIDC_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = os.environ.get("JOINEDUP_OIDC_CLIENT_SECRET", "")
OIDC_RP_SIGN_ALGO = os.environ.get("JOINEDUP_OIDC_SIGN_ALGO", "RS256")
OIDC_OP_AUTHORIZATION_ENDPOINT = os.environ.get("JOINEDUP_OIDC_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = os.environ.get("JOINEDUP_OIDC_TOKEN_ENDPOINT", "")
OIDC_OP_USER_ENDPOINT = os.environ.get("JOINEDUP_OIDC_USER_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = os.environ.get("JOINEDUP_OIDC_JWKS_ENDPOINT", "")
OIDC_RP_SCOPES = "openid email profile"
OIDC_USE_PKCE = True
OIDC_CREATE_USER = True
#: the provider's claim listing the user's groups, and which group grants which role
OIDC_ROLES_CLAIM = os.environ.get("JOINEDUP_OIDC_ROLES_CLAIM", "groups")
OIDC_ROLE_GROUPS = {
    role: os.environ.get(f"JOINEDUP_OIDC_GROUP_{role.upper()}", f"joinedup-{role}")
    for role in ("analyst", "planner", "engineer", "admin")
}

# django-axes: lock a user name from an address after repeated failures
AXES_FAILURE_LIMIT = int(os.environ.get("JOINEDUP_DASHBOARD_LOCKOUT_FAILURES", "5"))
AXES_COOLOFF_TIME = timedelta(
    minutes=int(os.environ.get("JOINEDUP_DASHBOARD_LOCKOUT_MINUTES", "15"))
)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "dashboard/locked_out.html"
AXES_VERBOSE = False
AXES_IPWARE_PROXY_COUNT = int(os.environ.get("JOINEDUP_DASHBOARD_PROXY_COUNT", "0"))

OTP_TOTP_ISSUER = "Joined-Up"

# -- sessions: expire on idle, and absolutely --------------------------------------------
IDLE_SECONDS = 60 * int(os.environ.get("JOINEDUP_DASHBOARD_IDLE_MINUTES", "30"))
MAX_SESSION_SECONDS = 3600 * int(os.environ.get("JOINEDUP_DASHBOARD_MAX_HOURS", "10"))
# the server-side expiry slides with the last-seen time (written at most once a minute by
# middleware.SessionLimitsMiddleware, which also enforces both limits itself)
SESSION_COOKIE_AGE = IDLE_SECONDS + 120
SESSION_SAVE_EVERY_REQUEST = False
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
CSRF_COOKIE_HTTPONLY = True
CSRF_FAILURE_VIEW = "dashboard.views.errors.csrf_failure"

# -- security headers -----------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# -- static files (served by the app itself: whitenoise; nothing from a CDN) ------------------
STATIC_URL = "/static/"
STATIC_ROOT = APP_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "Europe/London"
USE_I18N = False
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # request logs name paths and users, never a query string (it may hold a search)
    "loggers": {
        "django.request": {"handlers": ["console"], "level": "ERROR"},
        "axes": {"handlers": ["console"], "level": "WARNING"},
    },
}
