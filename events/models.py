"""The outbox: one row per thing that happened, written in the transaction that made it happen.

An account's events are numbered 1, 2, 3, ... (`seq`) with no gap and no duplicate: the
numbers come from the account's `EventSequence` row, which every recording locks last, so
two changes of one account take their numbers in the order they commit. Market events
(quotes) belong to no account and have no `seq`; their `id` orders them.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from stockflow.events import as_json


class Event(models.Model):
    id = models.BigAutoField(primary_key=True)
    # Null for market events (a quote); an account's events go with the account.
    account = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,  # event_account_seq leads with it
    )
    seq = models.PositiveBigIntegerField(null=True)
    type = models.CharField(max_length=32)
    # The committed state the event reports, JSON-ready: decimals as strings, times ISO 8601.
    data = models.JSONField()
    created_at = models.DateTimeField()
    # Set once the relay handed the event to every subscriber; null rows are the relay's work.
    relayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "seq"], name="event_account_seq"),
            models.CheckConstraint(
                condition=Q(account__isnull=True, seq__isnull=True)
                | Q(account__isnull=False, seq__gte=1),
                name="event_seq_iff_account",
            ),
        ]
        indexes = [
            models.Index(
                fields=["account", "id"],
                condition=Q(relayed_at__isnull=True),
                name="event_unrelayed",
            ),
            models.Index(fields=["created_at"], name="event_created"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.type} account={self.account_id} seq={self.seq}"

    def as_message(self) -> dict:
        """The event as the WebSocket streams send it: `event` (its type), then for an account's
        event its `seq` and `created_at`, then the data's own keys."""
        if self.account_id is None:
            return {"event": self.type, **self.data}
        return {
            "event": self.type,
            "seq": self.seq,
            "created_at": as_json(self.created_at),
            **self.data,
        }


class EventSequence(models.Model):
    """The last `seq` an account's events took: one row per account, locked while numbering."""

    account = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    last_seq = models.PositiveBigIntegerField()

    def __str__(self) -> str:
        return f"account={self.account_id} last_seq={self.last_seq}"
