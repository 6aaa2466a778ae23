"""Errors of the events context."""

from stockflow.errors import Gone, InvalidInput


class EventsPruned(Gone):
    code = "events_pruned"
    message = (
        "Events up to seq {pruned_through} were pruned (kept {days} days): since must be at "
        "least {pruned_through}. Read the current state from the API, then resume from the "
        "oldest kept event."
    )


class SinceAhead(InvalidInput):
    code = "since_ahead"
    field = "since"
    message = (
        "since is {since} but this account's latest event is seq {latest}: a seq this account "
        "never reached (another account's, or another server's)."
    )
