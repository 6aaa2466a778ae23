"""Service-level tests of every money rule: submission, settlement, cancellation, sweeping."""

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError
from django.db.transaction import atomic
from django.utils import timezone

from stockflow.exceptions import status_of
from stocks.errors import UnknownTicker
from stocks.tests.factories import StockDataFactory
from transactions import services, tasks
from transactions.errors import NotPending
from transactions.models import (
    FailureReason,
    Position,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from transactions.services import (
    submission,
    transaction_cancel,
    transaction_submit,
    transactions_settle_for_user,
    transactions_stale,
)
from transactions.tasks import settle_user_transactions_task, sweep_pending_transactions_task
from transactions.tests.factories import PositionFactory, TransactionFactory
from users.models import User
from users.tests.factories import UserFactory

BUY, SELL = TransactionType.BUY, TransactionType.SELL
PENDING, COMPLETED = TransactionStatus.PENDING, TransactionStatus.COMPLETED
FAILED, CANCELLED = TransactionStatus.FAILED, TransactionStatus.CANCELLED
SETTLED_EARLIER = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

# Measured: SAVEPOINT, lock user, lock pending, lock positions, update balance, save the
# position, one UPDATE of the transactions per outcome, the events (numbered and inserted in
# one statement), RELEASE SAVEPOINT — the same for 1 or 10.
SETTLE_ONE_TICKER_QUERIES = 9

pytestmark = pytest.mark.django_db


def settle(user) -> list[Transaction]:
    return transactions_settle_for_user(user_id=user.pk)


def balance_of(user) -> Decimal:
    return User.objects.values_list("balance", flat=True).get(pk=user.pk)


def position_of(user, ticker: str = "AAPL") -> tuple[int, Decimal]:
    return Position.objects.values_list("quantity", "average_cost").get(user=user, ticker=ticker)


def outcome(txn) -> tuple[str, str | None]:
    txn.refresh_from_db()
    return txn.status, txn.failure_reason


# --- submission ---------------------------------------------------------------------------


def test_submit_stores_a_pending_transaction_priced_at_the_latest_close():
    user = UserFactory()
    StockDataFactory(ticker="AAPL", close_price=Decimal("150.2500"))

    txn = transaction_submit(user=user, ticker="AAPL", transaction_type=BUY, transaction_volume=4)

    stored = Transaction.objects.get()
    assert stored.pk == txn.pk
    assert stored.user_id == user.pk
    assert stored.ticker == "AAPL"
    assert stored.transaction_type == BUY
    assert stored.transaction_volume == 4
    assert stored.unit_price == Decimal("150.2500")
    assert stored.transaction_price == Decimal("601.00")
    assert stored.status == PENDING
    assert stored.failure_reason is None
    assert stored.settled_at is None
    assert balance_of(user) == Decimal("10000.00")


def test_submit_uses_the_newest_quote_by_timestamp_not_an_older_one():
    user = UserFactory()
    StockDataFactory(ticker="AAPL", close_price=Decimal("200.0000"), timestamp=SETTLED_EARLIER)
    # Inserted later (higher id) but older in market time: must not be used.
    StockDataFactory(
        ticker="AAPL",
        close_price=Decimal("100.0000"),
        timestamp=SETTLED_EARLIER - timedelta(days=1),
    )
    StockDataFactory(ticker="MSFT", close_price=Decimal("999.0000"), timestamp=SETTLED_EARLIER)

    txn = transaction_submit(user=user, ticker="AAPL", transaction_type=BUY, transaction_volume=2)

    assert txn.unit_price == Decimal("200.0000")
    assert txn.transaction_price == Decimal("400.00")


@pytest.mark.parametrize(
    ("close_price", "volume", "buy_pays", "sell_receives"),
    [
        ("0.0050", 1, "0.01", "0.00"),
        ("1.0025", 2, "2.01", "2.00"),
        ("0.1250", 1, "0.13", "0.12"),
        ("33.3350", 3, "100.01", "100.00"),
        ("0.0049", 1, "0.01", "0.00"),  # a buy of anything costs at least a cent
        ("0.0001", 1, "0.01", "0.00"),
        ("123.4567", 3, "370.38", "370.37"),  # 370.3701
        ("123.4500", 3, "370.35", "370.35"),  # exact: nothing to round
    ],
)
def test_submit_rounds_a_buys_price_up_and_a_sells_down_to_the_cent(
    close_price, volume, buy_pays, sell_receives
):
    user = UserFactory()
    StockDataFactory(ticker="AAPL", close_price=Decimal(close_price))

    buy, sell = (
        transaction_submit(
            user=user, ticker="AAPL", transaction_type=kind, transaction_volume=volume
        )
        for kind in (BUY, SELL)
    )

    assert (buy.transaction_price, sell.transaction_price) == (
        Decimal(buy_pays),
        Decimal(sell_receives),
    )
    stored = Transaction.objects.order_by("id").values_list("transaction_price", flat=True)
    assert list(stored) == [Decimal(buy_pays), Decimal(sell_receives)]


def test_submit_of_an_unknown_ticker_raises_not_found_and_stores_nothing():
    user = UserFactory()
    StockDataFactory(ticker="AAPL")

    with pytest.raises(UnknownTicker) as exc_info:
        transaction_submit(user=user, ticker="NOPE", transaction_type=BUY, transaction_volume=1)

    assert status_of(exc_info.value) == 404
    assert exc_info.value.code == "unknown_ticker"
    assert Transaction.objects.count() == 0


def test_submit_enqueues_settlement_only_when_the_row_commits(django_capture_on_commit_callbacks):
    user = UserFactory(balance=Decimal("1000.00"))
    StockDataFactory(ticker="AAPL", close_price=Decimal("100.0000"))

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        txn = transaction_submit(
            user=user, ticker="AAPL", transaction_type=BUY, transaction_volume=2
        )
    assert len(callbacks) == 1  # the "submitted" event's: its subscriber enqueues settlement
    assert outcome(txn) == (PENDING, None)

    for callback in callbacks:  # the commit: tasks run eagerly in unit tests
        callback()

    assert outcome(txn) == (COMPLETED, None)
    assert balance_of(user) == Decimal("800.00")


@pytest.fixture
def enqueued(monkeypatch):
    """The users whose settlement was enqueued, in order; the tasks themselves do not run."""
    users = []
    monkeypatch.setattr(tasks, "_enqueue_settlement", users.append)
    return users


def submit_buy(user, volume: int = 1) -> Transaction:
    return transaction_submit(
        user=user, ticker="AAPL", transaction_type=BUY, transaction_volume=volume
    )


def test_a_burst_of_submissions_enqueues_one_settlement_until_it_starts(
    enqueued, django_capture_on_commit_callbacks
):
    alice, bob = UserFactory(balance=Decimal("1000.00")), UserFactory(balance=Decimal("1000.00"))
    StockDataFactory(ticker="AAPL", close_price=Decimal("100.0000"))

    with django_capture_on_commit_callbacks(execute=True):
        first, second, third = submit_buy(alice), submit_buy(alice), submit_buy(alice, 2)
        submit_buy(bob)
    assert enqueued == [alice.pk, bob.pk]

    # The one queued task settles the whole burst, and clears the mark first.
    assert [t.pk for t in settle(alice)] == [first.pk, second.pk, third.pk]
    assert balance_of(alice) == Decimal("600.00")

    with django_capture_on_commit_callbacks(execute=True):
        submit_buy(alice)
    assert enqueued == [alice.pk, bob.pk, alice.pk]


def test_a_submission_whose_enqueue_fails_lets_the_next_one_enqueue(
    monkeypatch, django_capture_on_commit_callbacks
):
    user = UserFactory(balance=Decimal("1000.00"))
    StockDataFactory(ticker="AAPL", close_price=Decimal("100.0000"))
    attempts = []

    def broker_down(user_id):
        attempts.append(user_id)
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks, "_enqueue_settlement", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        submit_buy(user)  # robust on_commit: logged, the order stays stored
    with django_capture_on_commit_callbacks(execute=True):
        submit_buy(user)

    assert attempts == [user.pk, user.pk]
    assert Transaction.objects.filter(user=user, status=PENDING).count() == 2


def test_the_sweeper_enqueues_even_while_a_mark_says_queued(enqueued, settings):
    user = UserFactory(balance=Decimal("1000.00"))
    StockDataFactory(ticker="AAPL", close_price=Decimal("100.0000"))
    settings.SWEEP_PENDING_AFTER_SECONDS = 5.0
    tasks.request_settlement([user.pk])  # a mark whose task the broker then lost
    TransactionFactory(user=user, timestamp=timezone.now() - timedelta(seconds=60))

    assert sweep_pending_transactions_task() == 1
    assert enqueued == [user.pk, user.pk]


def test_settling_a_batch_writes_one_update_per_outcome(django_assert_num_queries):
    user = UserFactory(balance=Decimal("250.00"))
    fills = [TransactionFactory(user=user, unit_price=Decimal("100.0000")) for _ in range(2)]
    short = TransactionFactory(user=user, unit_price=Decimal("100.0000"))

    # SAVEPOINT, lock user, lock pending, lock positions, update balance, save the position,
    # one UPDATE for the two fills and one for the failure, the events, RELEASE SAVEPOINT.
    with django_assert_num_queries(SETTLE_ONE_TICKER_QUERIES + 1):
        settle(user)

    assert [outcome(t) for t in (*fills, short)] == [
        (COMPLETED, None),
        (COMPLETED, None),
        (FAILED, FailureReason.INSUFFICIENT_FUNDS),
    ]
    assert [t.filled_price for t in fills] == [Decimal("100.0000")] * 2
    assert balance_of(user) == Decimal("50.00")


# --- settlement: buys ---------------------------------------------------------------------


def test_buy_completes_when_cash_covers_exactly_the_price():
    user = UserFactory(balance=Decimal("300.00"))
    txn = TransactionFactory(user=user, transaction_volume=3, unit_price=Decimal("100.0000"))

    settled = settle(user)

    assert [t.pk for t in settled] == [txn.pk]
    txn.refresh_from_db()
    assert (txn.status, txn.failure_reason) == (COMPLETED, None)
    assert txn.settled_at is not None
    assert balance_of(user) == Decimal("0.00")
    assert position_of(user) == (3, Decimal("100.0000"))


def test_buy_fails_when_cash_is_short_by_one_cent():
    user = UserFactory(balance=Decimal("299.99"))
    txn = TransactionFactory(user=user, transaction_volume=3, unit_price=Decimal("100.0000"))

    settle(user)

    txn.refresh_from_db()
    assert (txn.status, txn.failure_reason) == (FAILED, FailureReason.INSUFFICIENT_FUNDS)
    assert txn.settled_at is not None
    assert balance_of(user) == Decimal("299.99")
    assert Position.objects.filter(user=user).count() == 0  # not even an empty position


def test_a_failed_buy_leaves_an_existing_position_untouched():
    user = UserFactory(balance=Decimal("10.00"))
    position = PositionFactory(user=user, quantity=7, average_cost=Decimal("12.3456"))
    txn = TransactionFactory(user=user, transaction_volume=1, unit_price=Decimal("10.0100"))

    settle(user)

    assert outcome(txn) == (FAILED, FailureReason.INSUFFICIENT_FUNDS)
    assert balance_of(user) == Decimal("10.00")
    reloaded = Position.objects.get(pk=position.pk)
    assert (reloaded.quantity, reloaded.average_cost) == (7, Decimal("12.3456"))
    assert reloaded.updated_at == position.updated_at


# --- settlement: sells --------------------------------------------------------------------


def test_sell_fails_when_the_user_holds_no_position():
    user = UserFactory(balance=Decimal("50.00"))
    txn = TransactionFactory(user=user, transaction_type=SELL, transaction_volume=1)

    settle(user)

    assert outcome(txn) == (FAILED, FailureReason.INSUFFICIENT_SHARES)
    assert balance_of(user) == Decimal("50.00")
    assert Position.objects.filter(user=user).count() == 0


def test_sell_fails_when_the_user_holds_too_few_shares():
    user = UserFactory(balance=Decimal("50.00"))
    PositionFactory(user=user, quantity=4, average_cost=Decimal("90.0000"))
    txn = TransactionFactory(user=user, transaction_type=SELL, transaction_volume=5)

    settle(user)

    assert outcome(txn) == (FAILED, FailureReason.INSUFFICIENT_SHARES)
    assert balance_of(user) == Decimal("50.00")
    assert position_of(user) == (4, Decimal("90.0000"))


def test_sell_fails_when_the_shares_are_held_in_another_ticker():
    user = UserFactory(balance=Decimal("50.00"))
    PositionFactory(user=user, ticker="MSFT", quantity=100)
    txn = TransactionFactory(user=user, ticker="AAPL", transaction_type=SELL)

    settle(user)

    assert outcome(txn) == (FAILED, FailureReason.INSUFFICIENT_SHARES)
    assert position_of(user, "MSFT") == (100, Decimal("100.0000"))
    assert Position.objects.filter(user=user).count() == 1


def test_sell_of_exactly_the_shares_held_completes_and_zeroes_the_position():
    user = UserFactory(balance=Decimal("0.00"))
    PositionFactory(user=user, quantity=5, average_cost=Decimal("90.0000"))
    txn = TransactionFactory(
        user=user, transaction_type=SELL, transaction_volume=5, unit_price=Decimal("100.0000")
    )

    settle(user)

    assert outcome(txn) == (COMPLETED, None)
    assert balance_of(user) == Decimal("500.00")
    assert position_of(user) == (0, Decimal("0.0000"))


def test_sell_adds_the_rounded_transaction_price_to_the_balance():
    user = UserFactory(balance=Decimal("10000.00"))
    PositionFactory(user=user, quantity=10)
    txn = TransactionFactory(
        user=user, transaction_type=SELL, transaction_volume=3, unit_price=Decimal("123.4567")
    )
    assert txn.transaction_price == Decimal("370.37")

    settle(user)

    assert outcome(txn) == (COMPLETED, None)
    assert balance_of(user) == Decimal("10370.37")
    assert position_of(user) == (7, Decimal("100.0000"))


# --- positions: weighted average cost -----------------------------------------------------


def test_average_cost_is_the_weighted_average_of_the_buys_rounded_up():
    user = UserFactory(balance=Decimal("10000.00"))
    TransactionFactory(user=user, transaction_volume=1, unit_price=Decimal("100.0000"))
    TransactionFactory(user=user, transaction_volume=2, unit_price=Decimal("101.0000"))

    settle(user)
    # (100.00 + 202.00) / 3 = 100.66666...
    assert position_of(user) == (3, Decimal("100.6667"))

    third = TransactionFactory(user=user, transaction_volume=3, unit_price=Decimal("99.9950"))
    assert third.transaction_price == Decimal("299.99")  # 299.985 up
    settle(user)
    # (3 x 100.6667 + 299.99) / 6 = 601.9901 / 6 = 100.331683... up
    assert position_of(user) == (6, Decimal("100.3317"))
    assert balance_of(user) == Decimal("9398.01")


def test_average_cost_rounds_up_at_the_fifth_place():
    user = UserFactory(balance=Decimal("10.00"))
    txn = TransactionFactory(user=user, transaction_volume=3, unit_price=Decimal("0.3333"))
    assert txn.transaction_price == Decimal("1.00")  # 0.9999 up

    settle(user)

    # 1.00 / 3 = 0.33333...: up is 0.3334 (half up would give 0.3333), so the cost basis
    # is never less than the cash paid.
    assert position_of(user) == (3, Decimal("0.3334"))


def test_partial_sell_keeps_the_average_cost_and_a_full_sell_resets_it():
    user = UserFactory(balance=Decimal("1000.00"))
    TransactionFactory(user=user, transaction_volume=2, unit_price=Decimal("10.0000"))
    TransactionFactory(user=user, transaction_volume=2, unit_price=Decimal("20.0000"))
    settle(user)
    assert position_of(user) == (4, Decimal("15.0000"))

    TransactionFactory(
        user=user, transaction_type=SELL, transaction_volume=1, unit_price=Decimal("30.0000")
    )
    settle(user)
    assert position_of(user) == (3, Decimal("15.0000"))
    assert balance_of(user) == Decimal("970.00")

    TransactionFactory(
        user=user, transaction_type=SELL, transaction_volume=3, unit_price=Decimal("5.0000")
    )
    settle(user)
    assert position_of(user) == (0, Decimal("0.0000"))
    assert balance_of(user) == Decimal("985.00")

    TransactionFactory(user=user, transaction_volume=1, unit_price=Decimal("50.0000"))
    settle(user)
    assert position_of(user) == (1, Decimal("50.0000"))  # a fresh start, no stale cost
    assert Position.objects.filter(user=user).count() == 1


# --- settlement order (FIFO) --------------------------------------------------------------


def test_buy_then_sell_of_the_same_shares_both_complete_in_one_settlement():
    user = UserFactory(balance=Decimal("500.00"))
    buy = TransactionFactory(user=user, transaction_volume=5, unit_price=Decimal("100.0000"))
    sell = TransactionFactory(
        user=user, transaction_type=SELL, transaction_volume=5, unit_price=Decimal("110.0000")
    )

    settled = settle(user)

    assert [t.pk for t in settled] == [buy.pk, sell.pk]
    assert outcome(buy) == (COMPLETED, None)
    assert outcome(sell) == (COMPLETED, None)
    assert balance_of(user) == Decimal("550.00")
    assert position_of(user) == (0, Decimal("0.0000"))


def test_sell_then_buy_settles_the_sell_first_so_it_fails():
    user = UserFactory(balance=Decimal("500.00"))
    sell = TransactionFactory(user=user, transaction_type=SELL, transaction_volume=5)
    buy = TransactionFactory(user=user, transaction_volume=5, unit_price=Decimal("100.0000"))

    settled = settle(user)

    assert [t.pk for t in settled] == [sell.pk, buy.pk]
    assert outcome(sell) == (FAILED, FailureReason.INSUFFICIENT_SHARES)
    assert outcome(buy) == (COMPLETED, None)
    assert balance_of(user) == Decimal("0.00")
    assert position_of(user) == (5, Decimal("100.0000"))


def test_settlement_order_is_submission_id_order_not_timestamp_order():
    user = UserFactory(balance=Decimal("100.00"))
    buy = TransactionFactory(user=user, timestamp=SETTLED_EARLIER + timedelta(hours=1))
    sell = TransactionFactory(user=user, transaction_type=SELL, timestamp=SETTLED_EARLIER)

    settled = settle(user)

    assert [t.pk for t in settled] == [buy.pk, sell.pk]
    assert outcome(buy) == (COMPLETED, None)
    assert outcome(sell) == (COMPLETED, None)


def test_cash_from_an_earlier_sell_funds_a_later_buy_in_the_same_settlement():
    user = UserFactory(balance=Decimal("0.00"))
    PositionFactory(user=user, ticker="AAPL", quantity=10)
    sell = TransactionFactory(
        user=user, ticker="AAPL", transaction_type=SELL, transaction_volume=10
    )
    buy = TransactionFactory(
        user=user, ticker="MSFT", transaction_volume=5, unit_price=Decimal("200.0000")
    )

    settle(user)

    assert outcome(sell) == (COMPLETED, None)
    assert outcome(buy) == (COMPLETED, None)
    assert balance_of(user) == Decimal("0.00")
    assert position_of(user, "AAPL") == (0, Decimal("0.0000"))
    assert position_of(user, "MSFT") == (5, Decimal("200.0000"))


def test_one_settlement_handles_several_tickers():
    user = UserFactory(balance=Decimal("1000.00"))
    PositionFactory(user=user, ticker="GOOG", quantity=2, average_cost=Decimal("50.0000"))
    aapl = TransactionFactory(
        user=user, ticker="AAPL", transaction_volume=3, unit_price=Decimal("100.0000")
    )
    msft = TransactionFactory(
        user=user, ticker="MSFT", transaction_volume=2, unit_price=Decimal("250.0000")
    )
    goog = TransactionFactory(
        user=user,
        ticker="GOOG",
        transaction_type=SELL,
        transaction_volume=2,
        unit_price=Decimal("60.0000"),
    )
    tsla = TransactionFactory(
        user=user, ticker="TSLA", transaction_volume=1, unit_price=Decimal("321.0000")
    )

    settled = settle(user)

    assert [t.pk for t in settled] == [aapl.pk, msft.pk, goog.pk, tsla.pk]
    assert outcome(aapl) == (COMPLETED, None)
    assert outcome(msft) == (COMPLETED, None)
    assert outcome(goog) == (COMPLETED, None)
    # 1000 - 300 - 500 + 120 = 320 < 321
    assert outcome(tsla) == (FAILED, FailureReason.INSUFFICIENT_FUNDS)
    assert balance_of(user) == Decimal("320.00")
    assert dict(
        Position.objects.filter(user=user).values_list("ticker", "quantity").order_by("ticker")
    ) == {"AAPL": 3, "GOOG": 0, "MSFT": 2}


# --- idempotency and scope ----------------------------------------------------------------


def test_settling_twice_changes_nothing_the_second_time():
    user = UserFactory(balance=Decimal("1000.00"))
    buy = TransactionFactory(user=user, transaction_volume=3)
    fail = TransactionFactory(user=user, transaction_type=SELL, transaction_volume=9)
    assert len(settle(user)) == 2
    buy.refresh_from_db()
    fail.refresh_from_db()
    position = Position.objects.get(user=user)

    assert settle(user) == []

    assert balance_of(user) == Decimal("700.00")
    again = Position.objects.get(user=user)
    assert (again.quantity, again.average_cost, again.updated_at) == (
        3,
        Decimal("100.0000"),
        position.updated_at,
    )
    for txn in (buy, fail):
        reloaded = Transaction.objects.get(pk=txn.pk)
        assert (reloaded.status, reloaded.failure_reason, reloaded.settled_at) == (
            txn.status,
            txn.failure_reason,
            txn.settled_at,
        )


@pytest.mark.parametrize(
    ("status", "failure_reason"),
    [
        (COMPLETED, None),
        (FAILED, FailureReason.INSUFFICIENT_FUNDS),
        (CANCELLED, None),
    ],
)
def test_a_transaction_that_is_no_longer_pending_is_never_touched(status, failure_reason):
    user = UserFactory(balance=Decimal("1000.00"))
    final = TransactionFactory(
        user=user,
        transaction_volume=5,
        status=status,
        failure_reason=failure_reason,
        settled_at=SETTLED_EARLIER,
    )
    pending = TransactionFactory(user=user, transaction_volume=1)

    settled = settle(user)

    assert [t.pk for t in settled] == [pending.pk]
    final.refresh_from_db()
    assert (final.status, final.failure_reason, final.settled_at) == (
        status,
        failure_reason,
        SETTLED_EARLIER,
    )
    assert balance_of(user) == Decimal("900.00")  # only the pending buy moved money
    assert position_of(user) == (1, Decimal("100.0000"))


def test_settlement_leaves_other_users_transactions_alone():
    user = UserFactory(balance=Decimal("1000.00"))
    other = UserFactory(balance=Decimal("1000.00"))
    mine = TransactionFactory(user=user)
    theirs = TransactionFactory(user=other)

    assert [t.pk for t in settle(user)] == [mine.pk]

    assert outcome(mine) == (COMPLETED, None)
    assert outcome(theirs) == (PENDING, None)
    assert Transaction.objects.get(pk=theirs.pk).settled_at is None
    assert balance_of(other) == Decimal("1000.00")
    assert Position.objects.filter(user=other).count() == 0


def test_settling_an_unknown_user_returns_nothing():
    TransactionFactory()

    assert transactions_settle_for_user(user_id=987654321) == []
    assert Transaction.objects.get().status == PENDING


def test_settling_a_user_without_pending_transactions_returns_nothing():
    user = UserFactory(balance=Decimal("5.00"))

    assert settle(user) == []
    assert balance_of(user) == Decimal("5.00")


@pytest.mark.parametrize("pending_count", [1, 10])
def test_settlement_takes_the_same_number_of_queries_for_1_or_10_transactions(
    pending_count, django_assert_num_queries
):
    user = UserFactory(balance=Decimal("100000.00"))
    PositionFactory(user=user, quantity=1)
    TransactionFactory.create_batch(pending_count, user=user, transaction_volume=2)

    with django_assert_num_queries(SETTLE_ONE_TICKER_QUERIES):
        settled = settle(user)

    assert len(settled) == pending_count
    assert balance_of(user) == Decimal("100000.00") - Decimal("200.00") * pending_count
    assert position_of(user) == (1 + 2 * pending_count, Decimal("100.0000"))


# --- cancellation -------------------------------------------------------------------------


def test_cancel_of_a_pending_transaction_marks_it_cancelled_and_settlement_skips_it():
    user = UserFactory(balance=Decimal("1000.00"))
    txn = TransactionFactory(user=user)
    before = timezone.now()

    cancelled = transaction_cancel(transaction=txn)

    assert cancelled.pk == txn.pk
    assert cancelled.status == CANCELLED
    assert cancelled.failure_reason is None
    assert cancelled.settled_at >= before
    assert Transaction.objects.get(pk=txn.pk).status == CANCELLED
    assert settle(user) == []
    assert balance_of(user) == Decimal("1000.00")


@pytest.mark.parametrize(
    ("status", "failure_reason"),
    [
        (COMPLETED, None),
        (FAILED, FailureReason.INSUFFICIENT_SHARES),
        (CANCELLED, None),
    ],
)
def test_cancel_of_a_settled_transaction_is_a_conflict_and_changes_nothing(status, failure_reason):
    txn = TransactionFactory(
        status=status, failure_reason=failure_reason, settled_at=SETTLED_EARLIER
    )

    with pytest.raises(NotPending) as exc_info:
        transaction_cancel(transaction=txn)

    assert status_of(exc_info.value) == 409
    assert exc_info.value.code == "not_pending"
    reloaded = Transaction.objects.get(pk=txn.pk)
    assert (reloaded.status, reloaded.failure_reason, reloaded.settled_at) == (
        status,
        failure_reason,
        SETTLED_EARLIER,
    )


def test_cancel_after_settlement_reports_the_settled_status_and_changes_nothing():
    user = UserFactory(balance=Decimal("1000.00"))
    txn = TransactionFactory(user=user)  # this in-memory copy still says "pending"
    settle(user)

    with pytest.raises(NotPending) as exc_info:
        transaction_cancel(transaction=txn)

    assert exc_info.value.code == "not_pending"
    assert "already completed" in str(exc_info.value.detail)
    assert Transaction.objects.get(pk=txn.pk).status == COMPLETED
    assert balance_of(user) == Decimal("900.00")


# --- the stale-pending sweeper ------------------------------------------------------------


def age(txn, seconds: float) -> None:
    Transaction.objects.filter(pk=txn.pk).update(
        timestamp=timezone.now() - timedelta(seconds=seconds)
    )


def test_requeue_picks_only_users_with_pending_transactions_older_than_the_cutoff(
    enqueued, settings
):
    settings.SWEEP_PENDING_AFTER_SECONDS = 5.0
    stale_a, stale_b, fresh, settled, cancelled = UserFactory.create_batch(5)
    for txn in TransactionFactory.create_batch(2, user=stale_a):
        age(txn, 60)
    age(TransactionFactory(user=stale_b), 6)
    TransactionFactory(user=fresh)
    age(TransactionFactory(user=fresh, status=COMPLETED, settled_at=SETTLED_EARLIER), 600)
    age(TransactionFactory(user=settled, status=FAILED, settled_at=SETTLED_EARLIER), 600)
    age(TransactionFactory(user=cancelled, status=CANCELLED, settled_at=SETTLED_EARLIER), 600)

    requeued, tickers = transactions_stale(older_than_seconds=5)

    assert (requeued, tickers) == (sorted([stale_a.pk, stale_b.pk]), [])
    assert sweep_pending_transactions_task() == 2
    assert enqueued == requeued  # each user once, even with two stale transactions
    assert Transaction.objects.filter(status=PENDING).count() == 4  # enqueued, not settled


def test_requeue_with_nothing_stale_enqueues_nothing(enqueued, settings):
    settings.SWEEP_PENDING_AFTER_SECONDS = 5.0
    age(TransactionFactory(), 4)

    assert transactions_stale(older_than_seconds=5) == ([], [])
    assert sweep_pending_transactions_task() == 0
    assert enqueued == []


# --- tasks --------------------------------------------------------------------------------


def test_the_settle_task_calls_the_settlement_service():
    user = UserFactory(balance=Decimal("1000.00"))
    buy = TransactionFactory(user=user, transaction_volume=2)
    sell = TransactionFactory(user=user, transaction_type=SELL, transaction_volume=3)

    result = settle_user_transactions_task.apply(args=[user.pk])

    assert result.successful()
    assert result.get() == 2
    assert outcome(buy) == (COMPLETED, None)
    assert outcome(sell) == (FAILED, FailureReason.INSUFFICIENT_SHARES)
    assert balance_of(user) == Decimal("800.00")
    assert settle_user_transactions_task.apply(args=[user.pk]).get() == 0


def test_the_sweep_task_requeues_stale_users_whose_settlement_then_runs(settings):
    settings.SWEEP_PENDING_AFTER_SECONDS = 5.0
    stale_user = UserFactory(balance=Decimal("1000.00"))
    fresh_user = UserFactory(balance=Decimal("1000.00"))
    stale = TransactionFactory(user=stale_user, transaction_volume=4)
    age(stale, 30)
    fresh = TransactionFactory(user=fresh_user)

    result = sweep_pending_transactions_task.apply()

    assert result.successful()
    assert result.get() == 1
    assert outcome(stale) == (COMPLETED, None)  # settled by the eagerly run settle task
    assert balance_of(stale_user) == Decimal("600.00")
    assert outcome(fresh) == (PENDING, None)


# --- database constraints -----------------------------------------------------------------


def test_the_database_refuses_a_negative_balance():
    user = UserFactory(balance=Decimal("1.00"))

    with pytest.raises(IntegrityError), atomic():
        User.objects.filter(pk=user.pk).update(balance=Decimal("-0.01"))

    assert balance_of(user) == Decimal("1.00")


def test_the_database_refuses_a_negative_position_quantity():
    position = PositionFactory(quantity=1)

    with pytest.raises(IntegrityError), atomic():
        Position.objects.filter(pk=position.pk).update(quantity=-1)

    assert Position.objects.get(pk=position.pk).quantity == 1


# --- invariants over a random but seeded sequence -----------------------------------------


class Reference:
    """An independent model of the rules: expected balances, holdings and outcomes."""

    def __init__(self, users):
        self.balance = {u.pk: u.balance for u in users}
        self.shares = {(u.pk, t): 0 for u in users for t in ("AAPL", "MSFT")}
        self.queue = {u.pk: [] for u in users}
        self.outcome = {}

    def settle(self, user_id: int) -> None:
        queue, self.queue[user_id] = self.queue[user_id], []
        for txn in queue:
            key = (user_id, txn.ticker)
            if txn.pk in self.outcome:  # cancelled before settlement
                continue
            if txn.transaction_type == BUY:
                if self.balance[user_id] < txn.transaction_price:
                    self.outcome[txn.pk] = (FAILED, FailureReason.INSUFFICIENT_FUNDS)
                    continue
                self.balance[user_id] -= txn.transaction_price
                self.shares[key] += txn.transaction_volume
            else:
                if self.shares[key] < txn.transaction_volume:
                    self.outcome[txn.pk] = (FAILED, FailureReason.INSUFFICIENT_SHARES)
                    continue
                self.shares[key] -= txn.transaction_volume
                self.balance[user_id] += txn.transaction_price
            self.outcome[txn.pk] = (COMPLETED, None)


def test_cash_and_shares_are_conserved_over_200_seeded_random_operations():
    rng = random.Random(20250101)
    users = [UserFactory(balance=Decimal(b)) for b in ("2500.00", "10000.00", "400.00")]
    initial = {u.pk: u.balance for u in users}
    tickers = ["AAPL", "MSFT"]
    quote_time = datetime(2025, 1, 1, tzinfo=UTC)
    for ticker in tickers:
        StockDataFactory(ticker=ticker, close_price=Decimal("100.0000"), timestamp=quote_time)
    reference = Reference(users)
    settled_ids = []

    def settle_batch():
        for user in rng.sample(users, len(users)):
            settled_ids.extend(t.pk for t in settle(user))
            reference.settle(user.pk)

    for step in range(200):
        roll = rng.random()
        if roll < 0.1:
            quote_time += timedelta(minutes=1)
            close = Decimal(rng.randint(5_000, 3_000_000)) / 10_000  # 0.5000 .. 300.0000
            StockDataFactory(ticker=rng.choice(tickers), close_price=close, timestamp=quote_time)
        elif roll < 0.15 and (pending := list(Transaction.objects.filter(status=PENDING))):
            txn = rng.choice(pending)
            transaction_cancel(transaction=txn)
            reference.outcome[txn.pk] = (CANCELLED, None)
        else:
            user = rng.choice(users)
            txn = transaction_submit(
                user=user,
                ticker=rng.choice(tickers),
                transaction_type=rng.choice([BUY, BUY, SELL]),
                transaction_volume=rng.randint(1, 30),
            )
            reference.queue[user.pk].append(txn)
        if step % 25 == 24:
            settle_batch()
    settle_batch()

    txns = list(Transaction.objects.order_by("id"))
    assert Transaction.objects.filter(status=PENDING).count() == 0
    assert len(settled_ids) == len(set(settled_ids))  # none settled twice
    assert {t.pk: (t.status, t.failure_reason) for t in txns} == reference.outcome
    # Enough of every outcome happened for the test to mean something.
    counts = {}
    for t in txns:
        key = (t.status, t.transaction_type, t.failure_reason)
        counts[key] = counts.get(key, 0) + 1
    for key in [
        (COMPLETED, BUY, None),
        (COMPLETED, SELL, None),
        (FAILED, BUY, FailureReason.INSUFFICIENT_FUNDS),
        (FAILED, SELL, FailureReason.INSUFFICIENT_SHARES),
    ]:
        assert counts.get(key, 0) >= 5, counts
    assert sum(1 for t in txns if t.status == CANCELLED) >= 1
    assert len(settled_ids) == sum(1 for t in txns if t.status in (COMPLETED, FAILED))

    for user in users:
        mine = [t for t in txns if t.user_id == user.pk and t.status == COMPLETED]
        bought = sum((t.transaction_price for t in mine if t.transaction_type == BUY), Decimal(0))
        sold = sum((t.transaction_price for t in mine if t.transaction_type == SELL), Decimal(0))
        balance = balance_of(user)
        assert balance == initial[user.pk] - bought + sold
        assert balance == reference.balance[user.pk]
        assert balance >= 0
        for ticker in tickers:
            volume = {BUY: 0, SELL: 0}
            for t in mine:
                if t.ticker == ticker:
                    volume[t.transaction_type] += t.transaction_volume
            held = (
                Position.objects.filter(user=user, ticker=ticker)
                .values_list("quantity", flat=True)
                .first()
            ) or 0
            assert held == volume[BUY] - volume[SELL]
            assert held == reference.shares[(user.pk, ticker)]
            assert held >= 0


@pytest.mark.django_db
def test_a_submission_that_loses_the_idempotency_race_returns_the_winners_transaction(
    monkeypatch,
):
    user = UserFactory()
    StockDataFactory(ticker="AAPL", close_price=Decimal("10.0000"))
    winner = TransactionFactory(user=user, idempotency_key="raced")
    lookups = iter([None, winner])  # the first look misses: the winner had not committed yet
    monkeypatch.setattr(submission, "_transaction_for_key", lambda **_: next(lookups))

    txn, created = services.transaction_submit_once(
        user=user,
        idempotency_key="raced",
        ticker="AAPL",
        transaction_type="BUY",
        transaction_volume=1,
    )

    assert (txn.pk, created) == (winner.pk, False)
    assert Transaction.objects.filter(user=user).count() == 1
