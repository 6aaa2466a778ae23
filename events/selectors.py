"""Reading an account's events back: replay from a `seq`, the latest `seq`, what was pruned."""

from django.conf import settings
from django.db.models import Min, QuerySet

from .errors import EventsPruned, SinceAhead
from .models import Event, EventSequence


def latest_seq(*, account_id: int) -> int:
    """The account's latest `seq`; 0 before its first event."""
    last = EventSequence.objects.filter(account_id=account_id).values_list("last_seq", flat=True)
    return last.first() or 0


def events_after(*, account_id: int, since: int) -> QuerySet[Event]:
    """The account's events with `seq` > since, oldest first."""
    return Event.objects.filter(account_id=account_id, seq__gt=since).order_by("seq")


def since_check(*, account_id: int, since: int) -> None:
    """Refuse a `since` the account's events cannot resume from: one older than the oldest
    kept (EventsPruned: some events after it are gone), or one past the latest (SinceAhead)."""
    latest = latest_seq(account_id=account_id)
    if since > latest:
        raise SinceAhead(since=since, latest=latest)
    oldest = Event.objects.filter(account_id=account_id).aggregate(oldest=Min("seq"))["oldest"]
    pruned_through = latest if oldest is None else oldest - 1
    if since < pruned_through:
        raise EventsPruned(
            pruned_through=pruned_through, days=f"{settings.EVENTS_RETENTION_DAYS:g}"
        )
