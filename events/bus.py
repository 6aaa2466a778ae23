"""The event bus: who reacts to which event, and when.

Apps subscribe in their `AppConfig.ready()`, by event type, at one of two moments:

- `COMMIT`: in the process that recorded the events, right after their transaction commits
  (cache invalidation, handing work to a worker). Quick and idempotent. Should the process
  die between its commit and this call, the relay's sweep runs them instead.
- `RELAY`: in the relay, a worker's transaction that hands each committed event over at
  least once, in `seq` order per account, and marks it relayed (WebSocket publishing; later
  notifications, webhooks, metrics, audit). A handler that raises leaves the events
  unrelayed, for the sweep to try again.

A handler takes the list of events (`events.models.Event`) of its types from one commit or
one relay batch, so it can act on them in bulk. Services never call handlers: they record
events (`events.services.events_record`), and the bus does the rest.
"""

import logging
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass

from django.conf import settings

from stockflow.queued import clear_queued, mark_queued

logger = logging.getLogger(__name__)

COMMIT, RELAY = "commit", "relay"


@dataclass(frozen=True)
class Subscriber:
    types: frozenset[str]
    handler: Callable[[list], None]


_subscribers: dict[str, list[Subscriber]] = {COMMIT: [], RELAY: []}


def subscribe(*types: str, on: str):
    """Register the decorated `handler(events)` for events of `types`, at moment `on`."""
    if on not in _subscribers:
        raise ValueError(f"subscribe(on=...) takes COMMIT or RELAY, not {on!r}")

    def register(handler):
        subscriber = Subscriber(frozenset(types), handler)
        if subscriber not in _subscribers[on]:  # ready() importing a module twice adds nothing
            _subscribers[on].append(subscriber)
        return handler

    return register


def deliver(moment: str, events: list, *, raise_errors: bool) -> None:
    """Hand `events` to each handler of `moment` that takes some of their types. With
    `raise_errors=False` a failing handler is logged and the others still run."""
    for subscriber in _subscribers[moment]:
        mine = [event for event in events if event.type in subscriber.types]
        if not mine:
            continue
        if raise_errors:
            subscriber.handler(mine)
            continue
        try:
            subscriber.handler(mine)
        except Exception:
            logger.exception(
                "event_subscriber_failed handler=%s events=%d",
                subscriber.handler.__name__,
                len(mine),
            )


def dispatch(events: list) -> None:
    """After the commit that recorded `events`: run the COMMIT handlers, then have the events'
    streams relayed, but for those a handler handed to a task that relays them."""
    claimed = set()
    token = _claimed_here.set(claimed)
    try:
        deliver(COMMIT, events, raise_errors=False)
    finally:
        _claimed_here.reset(token)
    try:
        request_relay({event.account_id for event in events} - claimed)
    except Exception:  # the broker is down: the sweep relays them
        logger.exception("event_relay_request_failed")


# --- Asking for a relay -------------------------------------------------------------------
# A stream is one account's events, or the market's (account None). A relay of a stream is a
# Celery task (events.tasks.relay_events_task), enqueued once per burst like a settlement
# (stockflow.queued): the mark is set when one is queued and cleared just before it reads.

_relay_queue: list[Callable[[int | None], object]] = []
# Set while a worker's task relays inline when it ends (events.relay.relaying): the streams
# its commits touch are collected there instead of enqueuing a relay of their own.
_relaying_inline: ContextVar[set | None] = ContextVar("relaying_inline", default=None)
# Set while a dispatch runs its COMMIT handlers: the streams they claimed (claim_relay), known
# here without asking the cache again (a dead Redis answers every mark with "enqueue").
_claimed_here: ContextVar[set | None] = ContextVar("claimed_here", default=None)


def connect_relay_queue(enqueue: Callable[[int | None], object]) -> None:
    """Called by EventsConfig.ready() with the relay task's `delay`."""
    _relay_queue[:] = [enqueue]


def relay_mark(account_id: int | None) -> str:
    return f"relay:{'market' if account_id is None else account_id}"


def request_relay(account_ids: Iterable[int | None]) -> None:
    inline = _relaying_inline.get()
    if inline is not None:
        inline.update(account_ids)
        return
    for account_id in sorted(account_ids, key=lambda a: -1 if a is None else a):
        claim_relay(account_id) and _enqueue_relay(account_id)


def _enqueue_relay(account_id: int | None) -> None:
    try:
        _relay_queue[0](account_id)
    except Exception:
        clear_queued(relay_mark(account_id))  # the next commit tries again
        raise


def unclaim_relay(account_id: int | None, *also: str) -> None:
    """Take back a claim whose task could not be enqueued, clearing the marks in `also` in the
    same cache call: the stream's next commit requests a relay again. This dispatch does not
    (the broker just failed; a second try would cost a second timeout): the sweep relays."""
    clear_queued(relay_mark(account_id), *also)


def claim_relay(account_id: int | None) -> bool:
    """Say that a queued task will relay this stream when it ends (a settlement, an order
    check), so commits before that one enqueue no relay of their own. True when no such task
    had claimed it yet. The claiming task must clear the mark when it ends, just before it
    relays (events.relay.relaying), and must be enqueued, or found queued, after the claim."""
    claimed = _claimed_here.get()
    if claimed is not None:
        claimed.add(account_id)
    return mark_queued(relay_mark(account_id), settings.RELAY_QUEUED_MARK_SECONDS)
