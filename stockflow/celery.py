"""The Celery app; configuration comes from Django settings (the CELERY_* names)."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stockflow.settings")

app = Celery("stockflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(sender=None, **kwargs) -> None:
    """Treat a task as Django treats a request: keep the database connection for
    CONN_MAX_AGE, drop it after an error it did not survive. Celery's own Django fixup would
    close it around every task (a new PostgreSQL backend per settlement) unless
    CELERY_DB_REUSE_MAX is set, which settings does so that this handler decides instead."""
    from django.db import close_old_connections

    if not getattr(sender.request, "is_eager", False):  # eager: inside the caller's request
        close_old_connections()
