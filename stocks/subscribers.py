"""What follows a stored quote in this app: the cached latest quotes are dropped once it
commits, and the relay publishes it to the /ws/quotes/ streams of its ticker."""

from events.bus import COMMIT, RELAY, subscribe
from stockflow.cache import QUOTES_NAMESPACE, bump
from stockflow.events import publish_and_wait, quotes_group


@subscribe("quote", on=COMMIT)
def forget_cached_quotes(events) -> None:
    bump(QUOTES_NAMESPACE)


@subscribe("quote", on=RELAY)
def publish_quotes(events) -> None:
    publish_and_wait(
        [(quotes_group(event.data["quote"]["ticker"]), event.as_message()) for event in events]
    )
