"""WSGI entry point for gunicorn: Django's application behind stockflow.middleware's gate."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stockflow.settings")
# Sets Django up: the gate's module reads settings and imports DRF.
django_application = get_wsgi_application()

from stockflow.middleware import WSGIRequestGate  # noqa: E402

# The gate refuses what Django would mishandle while it builds the request, before any of
# Django's own middleware could run (a charset other than UTF-8).
application = WSGIRequestGate(django_application)
