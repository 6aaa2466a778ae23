"""The ceiling for cached reads: a bare Django view returning a quote's JSON from Redis.

No middleware, no REST framework, no authentication: one django-redis `get` and an
HttpResponse. `make bench` serves it with gunicorn under the web process' own settings
file and worker count, so the ratio of a StockFlow read to this one is what StockFlow's
own layers cost. The bench stores the body under QUOTE_KEY before the run.
"""

import os

import django
from django.conf import settings
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpResponse, HttpResponseNotFound
from django.urls import path

QUOTE_KEY = "ceiling:quote"


def quote(request, ticker):
    body = cache.get(QUOTE_KEY)
    if body is None:
        return HttpResponseNotFound()
    return HttpResponse(body, content_type="application/json")


urlpatterns = [path("stocks/<str:ticker>/", quote), path("health/", lambda request: HttpResponse())]

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="ceiling",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        CACHES={
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": os.environ.get("CEILING_REDIS_URL", "redis://127.0.0.1:6379/1"),
            }
        },
    )
    django.setup()

application = WSGIHandler()
