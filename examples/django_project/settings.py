"""Minimal Django settings for the example (and the tests, which override PEEKAPI)."""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "django_project.urls"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

MIDDLEWARE = [
    # First, so that it sees every request and the response exactly as it leaves Django.
    "peekapi.middleware.django.PeekApiMiddleware",
    "django.middleware.common.CommonMiddleware",
]

# peekapi options; the api key and endpoint come from PEEKAPI_API_KEY / PEEKAPI_ENDPOINT.
PEEKAPI = {"exclude_paths": ["/health"]}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["console"], "level": "CRITICAL"}},
}
