"""Recording the outbox: gapless per-account numbering, rollback, JSON-ready data, and the
events each service records in its own transaction."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.db.transaction import atomic

from events import bus
from events.models import Event, EventSequence
from events.services import events_record
from stocks.services import quotes_ingest
from stocks.tests.factories import StockDataFactory
from transactions.errors import InsufficientBuyingPower
from transactions.models import OrderType, TransactionType
from transactions.services import (
    orders_check_for_ticker,
    transaction_cancel,
    transaction_submit,
    transactions_settle_for_user,
    transfer_create,
)
from transactions.tests.factories import TransactionFactory
from users.models import User
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

BUY = TransactionType.BUY


def iso(moment: datetime) -> str:
    """A datetime as the outbox stores it: ISO 8601 UTC with `Z`."""
    return moment.isoformat().replace("+00:00", "Z")


def stream(user) -> list[tuple[int, str]]:
    """The account's events as (seq, type), in seq order, read back from the database."""
    return list(Event.objects.filter(account=user).order_by("seq").values_list("seq", "type"))


def data_of(user, seq: int) -> dict:
    return Event.objects.get(account=user, seq=seq).data


class Boom(Exception):
    pass


# --- numbering ------------------------------------------------------------------------------


def test_one_accounts_events_are_numbered_1_to_n_across_several_commits():
    user = UserFactory()

    with atomic():
        events_record([(user, "transfer", {"n": 1})])
    with atomic():
        events_record([(user, "transfer", {"n": 2}), (user, "cancelled", {"n": 3})])
    events_record([(user, "failed", {"n": 4})])  # a transaction of its own

    assert stream(user) == [(1, "transfer"), (2, "transfer"), (3, "cancelled"), (4, "failed")]
    assert EventSequence.objects.get(account=user).last_seq == 4


def test_entries_of_two_accounts_in_one_call_each_take_numbers_from_their_own_sequence():
    alice, bob = UserFactory(), UserFactory()
    events_record([(alice, "transfer", {}), (alice, "transfer", {})])

    rows = events_record(
        [(alice, "submitted", {}), (bob, "submitted", {}), (alice, "completed", {})]
    )

    assert [(row.account_id, row.seq, row.type) for row in rows] == [
        (alice.pk, 3, "submitted"),
        (bob.pk, 1, "submitted"),
        (alice.pk, 4, "completed"),
    ]
    assert stream(alice) == [(1, "transfer"), (2, "transfer"), (3, "submitted"), (4, "completed")]
    assert stream(bob) == [(1, "submitted")]


def test_a_rolled_back_transaction_leaves_no_event_and_does_not_consume_a_seq():
    user = UserFactory()
    events_record([(user, "transfer", {"n": 1})])

    with pytest.raises(Boom), atomic():
        events_record([(user, "transfer", {"n": "never"}), (user, "transfer", {"n": "never"})])
        raise Boom

    assert stream(user) == [(1, "transfer")]
    assert EventSequence.objects.get(account=user).last_seq == 1
    events_record([(user, "transfer", {"n": 2})])
    assert stream(user) == [(1, "transfer"), (2, "transfer")]
    assert data_of(user, 2) == {"n": 2}


def test_quote_events_belong_to_no_account_and_have_no_seq():
    rows = events_record([(None, "quote", {"quote": {"id": 1}}), (None, "quote", {"quote": {}})])

    assert [(row.account_id, row.seq) for row in rows] == [(None, None), (None, None)]
    assert list(Event.objects.order_by("id").values_list("account_id", "seq", "type")) == [
        (None, None, "quote"),
        (None, None, "quote"),
    ]
    assert EventSequence.objects.count() == 0  # no account's numbers were taken


def test_the_data_is_stored_json_ready_decimals_as_strings_and_datetimes_iso_with_z():
    user = UserFactory()
    moment = datetime(2025, 1, 2, 21, 0, 7, 104220, tzinfo=UTC)

    events_record(
        [
            (
                user,
                "transfer",
                {
                    "amount": Decimal("500.00"),
                    "price": Decimal("150.2500"),
                    "at": moment,
                    "nested": {"list": [Decimal("0.10"), moment], "none": None, "n": 3},
                },
            )
        ]
    )

    assert data_of(user, 1) == {
        "amount": "500.00",
        "price": "150.2500",
        "at": "2025-01-02T21:00:07.104220Z",
        "nested": {"list": ["0.10", "2025-01-02T21:00:07.104220Z"], "none": None, "n": 3},
    }


def test_the_bus_gets_the_events_only_once_their_transaction_commits(
    monkeypatch, django_capture_on_commit_callbacks
):
    user = UserFactory()
    dispatched = []
    monkeypatch.setattr(bus, "dispatch", lambda events: dispatched.append(events))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        rows = events_record([(user, "transfer", {}), (user, "transfer", {})])
    assert dispatched == []
    assert len(callbacks) == 1

    callbacks[0]()  # the commit
    assert [[(event.pk, event.seq) for event in batch] for batch in dispatched] == [
        [(rows[0].pk, 1), (rows[1].pk, 2)]
    ]


def test_recording_nothing_writes_nothing_and_dispatches_nothing(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert events_record([]) == []
    assert callbacks == []
    assert Event.objects.count() == 0


# --- what each service records --------------------------------------------------------------


def test_a_market_submission_records_submitted_with_the_pending_order_and_the_account():
    # Read back, as authentication hands the account over: the event states it as loaded.
    user = User.objects.get(pk=UserFactory(balance=Decimal("1000.00")).pk)
    StockDataFactory(ticker="AAPL", close_price=Decimal("100.0000"))

    # The test's transaction never commits: settlement does not run.
    txn = transaction_submit(user=user, ticker="AAPL", transaction_type=BUY, transaction_volume=2)

    assert stream(user) == [(1, "submitted")]
    assert data_of(user, 1) == {
        "order": {
            "id": txn.pk,
            "user_id": user.pk,
            "ticker": "AAPL",
            "transaction_type": "BUY",
            "transaction_volume": 2,
            "unit_price": "100.0000",
            "transaction_price": "200.00",
            "status": "pending",
            "failure_reason": None,
            "timestamp": iso(txn.timestamp),
            "settled_at": None,
            "order_type": "market",
            "limit_price": None,
            "stop_price": None,
            "trail_price": None,
            "trail_percent": None,
            "time_in_force": None,
            "triggered_at": None,
            "filled_price": None,
            "expires_at": None,
            "replaced_at": None,
        },
        "balance": "1000.00",
        "reserved": "0.00",
        "buying_power": "1000.00",
    }


def test_a_market_order_states_the_balance_as_of_its_seq_not_as_its_caller_loaded_it():
    """The account object a caller holds may predate a deposit (or a settlement) numbered
    before this event: the event must not show the balance going back."""
    user = User.objects.get(pk=UserFactory(balance=Decimal("1000.00")).pk)
    StockDataFactory(ticker="AAPL", close_price=Decimal("100.0000"))
    transfer_create(user=user, direction="deposit", amount=Decimal("500.00"))

    transaction_submit(user=user, ticker="AAPL", transaction_type=BUY, transaction_volume=2)

    assert stream(user) == [(1, "transfer"), (2, "submitted")]
    states = [(e.data["balance"], e.data["buying_power"]) for e in Event.objects.order_by("seq")]
    assert states == [("1500.00", "1500.00"), ("1500.00", "1500.00")]
    assert user.balance == Decimal("1000.00")  # the caller's object, stale as it was


def test_an_order_event_recorded_without_postgresql_states_the_account_the_same_way(
    monkeypatch,
):
    """SQLite (the embedded mode) reads the account after numbering in Python instead."""
    monkeypatch.setattr(connection, "vendor", "sqlite")
    user = User.objects.get(pk=UserFactory(balance=Decimal("1000.00")).pk)
    StockDataFactory(ticker="AAPL", close_price=Decimal("100.0000"))
    transfer_create(user=user, direction="deposit", amount=Decimal("500.00"))

    transaction_submit(user=user, ticker="AAPL", transaction_type=BUY, transaction_volume=2)

    assert stream(user) == [(1, "transfer"), (2, "submitted")]
    assert (data_of(user, 2)["balance"], data_of(user, 2)["reserved"]) == ("1500.00", "0.00")


def test_settlement_records_completed_and_failed_with_the_balance_after_each_order():
    user = UserFactory(balance=Decimal("250.00"))
    first = TransactionFactory(user=user, unit_price=Decimal("100.0000"))
    second = TransactionFactory(user=user, unit_price=Decimal("200.0000"))
    third = TransactionFactory(user=user, unit_price=Decimal("50.0000"))

    transactions_settle_for_user(user_id=user.pk)

    assert stream(user) == [(1, "completed"), (2, "failed"), (3, "completed")]
    summary = [
        (
            data_of(user, seq)["order"]["id"],
            data_of(user, seq)["order"]["status"],
            data_of(user, seq)["order"]["failure_reason"],
            data_of(user, seq)["balance"],
            data_of(user, seq)["reserved"],
            data_of(user, seq)["buying_power"],
        )
        for seq in (1, 2, 3)
    ]
    assert summary == [
        (first.pk, "completed", None, "150.00", "0.00", "150.00"),
        (second.pk, "failed", "insufficient_funds", "150.00", "0.00", "150.00"),
        (third.pk, "completed", None, "100.00", "0.00", "100.00"),
    ]
    assert data_of(user, 1)["order"]["filled_price"] == "100.0000"


def test_a_cancel_records_cancelled_with_the_reservation_released():
    user = UserFactory(balance=Decimal("1000.00"))
    StockDataFactory(ticker="AAPL", close_price=Decimal("100.0000"))
    order = transaction_submit(
        user=user,
        ticker="AAPL",
        transaction_type=BUY,
        transaction_volume=2,
        order_type=OrderType.LIMIT,
        limit_price=Decimal("90.0000"),
    )

    transaction_cancel(transaction=order)

    assert stream(user) == [(1, "submitted"), (2, "cancelled")]
    submitted, cancelled = data_of(user, 1), data_of(user, 2)
    assert (submitted["order"]["status"], submitted["reserved"], submitted["buying_power"]) == (
        "open",
        "180.00",
        "820.00",
    )
    assert (
        cancelled["order"]["id"],
        cancelled["order"]["status"],
        cancelled["balance"],
        cancelled["reserved"],
        cancelled["buying_power"],
    ) == (order.pk, "cancelled", "1000.00", "0.00", "1000.00")


def test_a_deposit_and_a_withdrawal_each_record_a_transfer_with_exact_data():
    user = UserFactory(username="alice", balance=Decimal("1000.00"))

    deposit = transfer_create(user=user, direction="deposit", amount=Decimal("250.5"))
    withdrawal = transfer_create(user=user, direction="withdrawal", amount=Decimal("50.00"))

    assert stream(user) == [(1, "transfer"), (2, "transfer")]
    assert data_of(user, 1) == {
        "transfer": {
            "id": deposit.pk,
            "user_id": user.pk,
            "username": "alice",
            "direction": "deposit",
            "amount": "250.50",
            "balance_after": "1250.50",
            "created_at": iso(deposit.created_at),
        },
        "balance": "1250.50",
        "reserved": "0.00",
        "buying_power": "1250.50",
    }
    assert data_of(user, 2) == {
        "transfer": {
            "id": withdrawal.pk,
            "user_id": user.pk,
            "username": "alice",
            "direction": "withdrawal",
            "amount": "50.00",
            "balance_after": "1200.50",
            "created_at": iso(withdrawal.created_at),
        },
        "balance": "1200.50",
        "reserved": "0.00",
        "buying_power": "1200.50",
    }


def test_a_refused_withdrawal_records_nothing():
    user = UserFactory(balance=Decimal("10.00"))

    with pytest.raises(InsufficientBuyingPower):
        transfer_create(user=user, direction="withdrawal", amount=Decimal("10.01"))

    assert stream(user) == []
    assert EventSequence.objects.filter(account=user).count() == 0


def test_quotes_ingest_records_one_quote_event_per_quote_for_no_account():
    at = datetime(2025, 3, 4, 15, 30, tzinfo=UTC)
    quote = {
        "open_price": Decimal("149.0000"),
        "close_price": Decimal("150.2500"),
        "high": Decimal("151.0000"),
        "low": Decimal("148.5000"),
        "volume": 1200,
        "timestamp": at,
    }

    aapl, msft = quotes_ingest(quotes=[{**quote, "ticker": "aapl"}, {**quote, "ticker": "MSFT"}])

    events = list(Event.objects.order_by("id").values_list("account_id", "seq", "type", "data"))
    assert events == [
        (
            None,
            None,
            "quote",
            {
                "quote": {
                    "id": stored.pk,
                    "ticker": ticker,
                    "open_price": "149.0000",
                    "close_price": "150.2500",
                    "high": "151.0000",
                    "low": "148.5000",
                    "volume": 1200,
                    "timestamp": "2025-03-04T15:30:00Z",
                }
            },
        )
        for stored, ticker in ((aapl, "AAPL"), (msft, "MSFT"))
    ]


def test_an_order_check_that_reaches_a_stop_records_triggered_for_its_account():
    user = UserFactory(balance=Decimal("10000.00"))
    StockDataFactory(ticker="AAPL", close_price=Decimal("100.0000"))
    stop = transaction_submit(
        user=user,
        ticker="AAPL",
        transaction_type=BUY,
        transaction_volume=1,
        order_type=OrderType.STOP,
        stop_price=Decimal("110.0000"),
    )
    StockDataFactory(ticker="AAPL", close_price=Decimal("120.0000"))  # a later quote

    assert orders_check_for_ticker(ticker="AAPL") == {user.pk}

    assert stream(user) == [(1, "submitted"), (2, "triggered")]
    triggered = data_of(user, 2)
    stop.refresh_from_db()
    assert (
        triggered["order"]["id"],
        triggered["order"]["status"],
        triggered["order"]["triggered_at"],
        triggered["balance"],
        triggered["reserved"],  # 110 + the 5 % collar: the stop still holds it
        triggered["buying_power"],
    ) == (stop.pk, "open", iso(stop.triggered_at), "10000.00", "115.50", "9884.50")
    # The check records no quote event: quotes are recorded when they are stored.
    assert Event.objects.filter(type="quote").count() == 0


def test_an_order_check_that_reaches_no_order_records_nothing():
    user = UserFactory(balance=Decimal("10000.00"))
    StockDataFactory(ticker="AAPL", close_price=Decimal("100.0000"))
    transaction_submit(
        user=user,
        ticker="AAPL",
        transaction_type=BUY,
        transaction_volume=1,
        order_type=OrderType.STOP,
        stop_price=Decimal("110.0000"),
    )
    StockDataFactory(ticker="AAPL", close_price=Decimal("105.0000"))

    assert orders_check_for_ticker(ticker="AAPL") == set()
    assert stream(user) == [(1, "submitted")]
