"""App config for events: the outbox every reaction subscribes to."""

from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"

    def ready(self):
        # The relay is a Celery task of this app; recording (a service) reaches it through
        # the bus, so no service imports a task module.
        from . import bus, tasks

        bus.connect_relay_queue(tasks.relay_events_task.delay)
