"""StockFlow project package: settings, urls, the Celery app and cross-cutting helpers."""

from .celery import app as celery_app

# The one place the version is written; a test keeps pyproject.toml's in step with it.
__version__ = "0.1.0"

__all__ = ("__version__", "celery_app")
