"""Model-based test: random submit/cancel/settle sequences match an independent reference model."""

import copy
import inspect
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from unittest.mock import patch

import pytest
from django.db.transaction import atomic, set_rollback
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from stocks.errors import UnknownTicker
from stocks.services import quotes_ingest
from transactions import services
from transactions.errors import NotPending
from transactions.models import (
    FailureReason,
    Position,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from transactions.services import (
    transaction_cancel,
    transaction_submit,
    transactions_settle_for_user,
)
from users.models import User
from users.tests.factories import UserFactory

BUY, SELL = TransactionType.BUY, TransactionType.SELL
PENDING, COMPLETED = TransactionStatus.PENDING, TransactionStatus.COMPLETED
FAILED, CANCELLED = TransactionStatus.FAILED, TransactionStatus.CANCELLED
FINAL = (COMPLETED, FAILED, CANCELLED)
INSUFFICIENT_FUNDS = FailureReason.INSUFFICIENT_FUNDS
INSUFFICIENT_SHARES = FailureReason.INSUFFICIENT_SHARES

TICKERS = ("AAPL", "MSFT", "BRK.B")
NEVER_QUOTED = "NOPE"
MAX_USERS = 3  # a few users, so that each trades often enough to build and sell positions
MAX_VOLUME = 50
FIRST_QUOTE_AT = datetime(2025, 1, 1, tzinfo=UTC)
ZERO_CASH = Decimal("0.00")
ZERO_COST = Decimal("0.0000")

MACHINE_SETTINGS = settings(
    max_examples=60,
    stateful_step_count=50,
    deadline=None,  # every step talks to PostgreSQL; its timing is not the code's
    database=None,  # no saved examples to replay: CI runs exactly what a local run runs
    derandomize=True,
)

# Opening balances include 0.00; close prices run from sub-cent prices (whose cash price
# rounds to 0.00 or a few cents) to prices no opening balance affords 50 of. Multiples of
# half a cent put an odd volume's cash price exactly on a half cent (rounded up), and 8 or
# 40 shares bought for an odd number of cents put the average cost exactly on a half at
# the fifth place: ties, where half up and banker's rounding can disagree.
opening_balances = st.decimals(min_value=0, max_value=Decimal("20000.00"), places=2)
close_prices = st.one_of(
    st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("1.0000"), places=4),
    st.decimals(min_value=Decimal("1.0000"), max_value=Decimal("1000.0000"), places=4),
    st.integers(min_value=1, max_value=20_000).map(lambda n: Decimal(n) * Decimal("0.0050")),
)
volumes = st.one_of(st.integers(min_value=1, max_value=MAX_VOLUME), st.sampled_from([8, 40]))
transaction_types = st.sampled_from([BUY, SELL])


def to_cents(amount: Decimal) -> Decimal:
    """API.md: a cash amount computed from price x volume is rounded to cents, half up."""
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def to_four_places(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


@dataclass
class ExpectedTransaction:
    user_id: int
    ticker: str
    transaction_type: str
    transaction_volume: int
    unit_price: Decimal
    transaction_price: Decimal
    status: str = PENDING
    failure_reason: str | None = None

    def as_row(self) -> tuple:
        return (
            self.user_id,
            self.ticker,
            self.transaction_type,
            self.transaction_volume,
            self.unit_price,
            self.transaction_price,
            self.status,
            self.failure_reason,
        )


@dataclass
class Holding:
    quantity: int
    average_cost: Decimal


class ReferenceModel:
    """API.md's rules in plain dicts of Decimals, sharing no code with the service."""

    def __init__(self):
        self.latest_close: dict[str, Decimal] = {}
        self.opening_balance: dict[int, Decimal] = {}
        self.balance: dict[int, Decimal] = {}
        # A position exists once a transaction on its ticker completed: a failed one changes
        # nothing, and a position sold down to zero stays, with a zero average cost.
        self.holdings: dict[tuple[int, str], Holding] = {}
        self.transactions: dict[int, ExpectedTransaction] = {}
        self.submitted_in_order: dict[int, list[int]] = {}

    def register(self, user_id: int, opening_balance: Decimal) -> None:
        self.opening_balance[user_id] = self.balance[user_id] = opening_balance
        self.submitted_in_order[user_id] = []

    def priced_order(
        self, user_id: int, ticker: str, transaction_type: str, transaction_volume: int
    ) -> ExpectedTransaction:
        """A market order is priced at submission from the ticker's latest close."""
        unit_price = self.latest_close[ticker]
        return ExpectedTransaction(
            user_id=user_id,
            ticker=ticker,
            transaction_type=transaction_type,
            transaction_volume=transaction_volume,
            unit_price=unit_price,
            transaction_price=to_cents(unit_price * transaction_volume),
        )

    def record_submission(self, pk: int, order: ExpectedTransaction) -> None:
        self.transactions[pk] = order
        self.submitted_in_order[order.user_id].append(pk)

    def ids_with_status(self, *statuses: str, user_id: int | None = None) -> list[int]:
        return [
            pk
            for pk, txn in self.transactions.items()
            if txn.status in statuses and user_id in (None, txn.user_id)
        ]

    def settle(self, user_id: int) -> list[int]:
        """Settle the user's pending transactions in submission order; return their ids."""
        pending = set(self.ids_with_status(PENDING, user_id=user_id))
        settled = [pk for pk in self.submitted_in_order[user_id] if pk in pending]
        for pk in settled:
            txn = self.transactions[pk]
            key = (user_id, txn.ticker)
            holding = self.holdings.get(key, Holding(0, ZERO_COST))
            if txn.transaction_type == BUY:
                if self.balance[user_id] < txn.transaction_price:
                    txn.status, txn.failure_reason = FAILED, INSUFFICIENT_FUNDS
                    continue
                # The cost a buy adds is its rounded cash price, not unit price x volume.
                cost = holding.quantity * holding.average_cost + txn.transaction_price
                quantity = holding.quantity + txn.transaction_volume
                self.holdings[key] = Holding(quantity, to_four_places(cost / quantity))
                self.balance[user_id] -= txn.transaction_price
            else:
                if holding.quantity < txn.transaction_volume:
                    txn.status, txn.failure_reason = FAILED, INSUFFICIENT_SHARES
                    continue
                quantity = holding.quantity - txn.transaction_volume
                average_cost = holding.average_cost if quantity else ZERO_COST
                self.holdings[key] = Holding(quantity, average_cost)
                self.balance[user_id] += txn.transaction_price
            txn.status = COMPLETED
        return settled

    def once_everyone_settles(self) -> "ReferenceModel":
        """A copy in which every pending transaction has settled: what users will have."""
        projection = copy.deepcopy(self)
        for user_id in projection.balance:
            projection.settle(user_id)
        return projection


class SettlementMachine(RuleBasedStateMachine):
    """Drives the real services and checks every stored row against the reference model."""

    users = Bundle("users")

    def __init__(self):
        super().__init__()
        self._cleanup = ExitStack()
        # Submission enqueues settlement on commit, and Celery runs eagerly in tests: a
        # commit would settle behind the model's back. Nothing commits inside the `db`
        # fixture today, but the machine must not rely on that: only the settle rule may
        # settle, or the model could not know which transactions are still pending.
        self._cleanup.enter_context(patch.object(services, "_enqueue_settlement"))
        # Each example runs in a savepoint that teardown rolls back, so examples never see
        # each other's rows; the test function's `db` fixture owns the outer transaction.
        self._cleanup.enter_context(atomic())
        self.model = ReferenceModel()
        self.quotes_posted = 0
        self.settled_by_the_service: set[int] = set()
        self.first_settled_at: dict[int, datetime] = {}

    def teardown(self):
        set_rollback(True)
        self._cleanup.close()

    def post_quote(self, ticker: str, close_price: Decimal) -> None:
        self.quotes_posted += 1
        quotes_ingest(
            quotes=[
                {
                    "ticker": ticker,
                    "open_price": close_price,
                    "close_price": close_price,
                    "high": close_price,
                    "low": close_price,
                    "volume": 1000,
                    # Strictly increasing, so this quote is the ticker's latest.
                    "timestamp": FIRST_QUOTE_AT + timedelta(minutes=self.quotes_posted),
                }
            ]
        )
        self.model.latest_close[ticker] = close_price

    def submit(
        self, user_id: int, ticker: str, transaction_type: str, transaction_volume: int
    ) -> ExpectedTransaction:
        """Submit through the service and check the stored row is priced as the model says."""
        expected = self.model.priced_order(user_id, ticker, transaction_type, transaction_volume)

        txn = transaction_submit(
            user=User.objects.get(pk=user_id),
            ticker=ticker,
            transaction_type=transaction_type,
            transaction_volume=transaction_volume,
        )

        assert txn.pk not in self.model.transactions
        assert txn.settled_at is None
        assert (
            txn.user_id,
            txn.ticker,
            txn.transaction_type,
            txn.transaction_volume,
            txn.unit_price,
            txn.transaction_price,
            txn.status,
            txn.failure_reason,
        ) == expected.as_row()
        self.model.record_submission(txn.pk, expected)
        return expected

    # --- rules --------------------------------------------------------------------------

    @precondition(lambda self: len(self.model.balance) < MAX_USERS)
    @rule(target=users, opening_balance=opening_balances)
    def a_user_registers(self, opening_balance):
        user = UserFactory(balance=opening_balance)
        self.model.register(user.pk, opening_balance)
        return user.pk

    @rule(ticker=st.sampled_from(TICKERS), close_price=close_prices)
    def a_quote_is_posted(self, ticker, close_price):
        self.post_quote(ticker, close_price)

    @precondition(lambda self: self.model.latest_close)
    @rule(user_id=users, data=st.data(), transaction_volume=volumes)
    def a_user_buys(self, user_id, data, transaction_volume):
        ticker = data.draw(st.sampled_from(sorted(self.model.latest_close)), label="ticker")
        self.submit(user_id, ticker, BUY, transaction_volume)

    @precondition(lambda self: self.model.latest_close)
    @rule(user_id=users, data=st.data(), transaction_volume=volumes)
    def a_user_sells(self, user_id, data, transaction_volume):
        ticker = data.draw(st.sampled_from(sorted(self.model.latest_close)), label="ticker")
        self.submit(user_id, ticker, SELL, transaction_volume)

    # Random prices almost never meet a balance to the cent, so this rule aims at the funds
    # check's boundary: it quotes a ticker so that `volume` shares cost exactly the cash the
    # user will have once their pending orders settle (a 4-place price x 50 is within
    # 0.0025 of it), then buys them.
    @precondition(lambda self: any(self.model.once_everyone_settles().balance.values()))
    @rule(data=st.data(), ticker=st.sampled_from(TICKERS), transaction_volume=volumes)
    def a_user_buys_shares_costing_exactly_their_cash(self, data, ticker, transaction_volume):
        cash = self.model.once_everyone_settles().balance
        user_id = data.draw(st.sampled_from([pk for pk in cash if cash[pk]]), label="user_id")
        self.post_quote(ticker, to_four_places(cash[user_id] / transaction_volume))

        order = self.submit(user_id, ticker, BUY, transaction_volume)

        assert order.transaction_price == cash[user_id]

    def shares_held_once_everyone_settles(self) -> dict[tuple[int, str], int]:
        return {
            key: holding.quantity
            for key, holding in self.model.once_everyone_settles().holdings.items()
            if holding.quantity and key[1] in self.model.latest_close
        }

    # Random sells mostly fail for want of shares; these two sell some, or all, of the
    # shares the user will hold once their pending orders settle.
    @precondition(shares_held_once_everyone_settles)
    @rule(data=st.data())
    def a_user_sells_some_of_the_shares_they_hold(self, data):
        held = self.shares_held_once_everyone_settles()
        user_id, ticker = data.draw(st.sampled_from(sorted(held)), label="holding")
        most = min(held[(user_id, ticker)], MAX_VOLUME)
        volume = data.draw(st.integers(min_value=1, max_value=most), label="transaction_volume")
        self.submit(user_id, ticker, SELL, volume)

    def holdings_sellable_in_one_order(self) -> list[tuple[int, str]]:
        held = self.shares_held_once_everyone_settles()
        return sorted(key for key, quantity in held.items() if quantity <= MAX_VOLUME)

    @precondition(holdings_sellable_in_one_order)
    @rule(data=st.data())
    def a_user_sells_all_the_shares_they_hold(self, data):
        holdings = self.holdings_sellable_in_one_order()
        user_id, ticker = data.draw(st.sampled_from(holdings), label="holding")
        held = self.shares_held_once_everyone_settles()[(user_id, ticker)]
        self.submit(user_id, ticker, SELL, held)

    @rule(
        user_id=users,
        data=st.data(),
        transaction_type=transaction_types,
        transaction_volume=volumes,
    )
    def an_order_for_a_ticker_without_quotes_is_refused(
        self, user_id, data, transaction_type, transaction_volume
    ):
        unquoted = sorted({*TICKERS, NEVER_QUOTED} - set(self.model.latest_close))
        ticker = data.draw(st.sampled_from(unquoted), label="ticker")

        with pytest.raises(UnknownTicker) as exc_info:
            transaction_submit(
                user=User.objects.get(pk=user_id),
                ticker=ticker,
                transaction_type=transaction_type,
                transaction_volume=transaction_volume,
            )

        assert exc_info.value.code == "unknown_ticker"
        # Nothing was created: the invariants compare every stored transaction to the model.

    @precondition(lambda self: self.model.ids_with_status(PENDING))
    @rule(data=st.data())
    def a_pending_transaction_is_cancelled(self, data):
        pending = self.model.ids_with_status(PENDING)
        pk = data.draw(st.sampled_from(pending), label="transaction_id")

        cancelled = transaction_cancel(transaction=Transaction.objects.get(pk=pk))

        assert (cancelled.pk, cancelled.status, cancelled.failure_reason) == (pk, CANCELLED, None)
        assert cancelled.settled_at is not None
        self.model.transactions[pk].status = CANCELLED

    @precondition(lambda self: self.model.ids_with_status(*FINAL))
    @rule(data=st.data())
    def cancelling_a_final_transaction_is_refused(self, data):
        pk = data.draw(st.sampled_from(self.model.ids_with_status(*FINAL)), label="transaction_id")

        with pytest.raises(NotPending) as exc_info:
            transaction_cancel(transaction=Transaction.objects.get(pk=pk))

        assert exc_info.value.code == "not_pending"
        # Nothing changed: the invariants check its status, reason and settled_at.

    @rule(user_id=users)
    def a_user_is_settled(self, user_id):
        expected = self.model.settle(user_id)

        settled = transactions_settle_for_user(user_id=user_id)

        settled_ids = [txn.pk for txn in settled]
        assert settled_ids == expected
        assert self.settled_by_the_service.isdisjoint(settled_ids), "settled twice"
        self.settled_by_the_service.update(settled_ids)
        # Every transaction reaches a final state: none of this user's is left pending.
        assert not Transaction.objects.filter(user_id=user_id, status=PENDING).exists()

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def balances_match_the_model(self):
        stored = dict(User.objects.filter(pk__in=self.model.balance).values_list("pk", "balance"))
        assert stored == self.model.balance

    @invariant()
    def positions_match_the_model(self):
        stored = {
            (user_id, ticker): Holding(quantity, average_cost)
            for user_id, ticker, quantity, average_cost in Position.objects.values_list(
                "user_id", "ticker", "quantity", "average_cost"
            )
        }
        assert stored == self.model.holdings

    @invariant()
    def every_transaction_matches_the_model(self):
        rows = Transaction.objects.values_list(
            "pk",
            "user_id",
            "ticker",
            "transaction_type",
            "transaction_volume",
            "unit_price",
            "transaction_price",
            "status",
            "failure_reason",
            "settled_at",
        )
        stored = {pk: tuple(fields) for pk, *fields in rows}
        assert {pk: fields[:-1] for pk, fields in stored.items()} == {
            pk: txn.as_row() for pk, txn in self.model.transactions.items()
        }
        for pk, (*_, status, _reason, settled_at) in stored.items():
            assert (settled_at is not None) == (status in FINAL), (pk, status, settled_at)
            if settled_at is not None:
                # Settled once: a final transaction's settled_at never moves again.
                assert self.first_settled_at.setdefault(pk, settled_at) == settled_at, pk

    @invariant()
    def cash_and_shares_are_conserved_by_completed_transactions(self):
        bought = dict.fromkeys(self.model.opening_balance, ZERO_CASH)
        sold = dict.fromkeys(self.model.opening_balance, ZERO_CASH)
        shares: dict[tuple[int, str], int] = {}
        completed = Transaction.objects.filter(status=COMPLETED).values_list(
            "user_id", "ticker", "transaction_type", "transaction_volume", "transaction_price"
        )
        for user_id, ticker, transaction_type, volume, price in completed:
            key = (user_id, ticker)
            if transaction_type == BUY:
                bought[user_id] += price
                shares[key] = shares.get(key, 0) + volume
            else:
                sold[user_id] += price
                shares[key] = shares.get(key, 0) - volume
        stored_balance = dict(
            User.objects.filter(pk__in=self.model.opening_balance).values_list("pk", "balance")
        )
        for user_id, opening in self.model.opening_balance.items():
            assert stored_balance[user_id] == opening - bought[user_id] + sold[user_id], user_id
        stored_quantity = {
            (user_id, ticker): quantity
            for user_id, ticker, quantity in Position.objects.values_list(
                "user_id", "ticker", "quantity"
            )
        }
        for key in shares.keys() | stored_quantity.keys():
            assert stored_quantity.get(key, 0) == shares.get(key, 0), key

    @invariant()
    def nothing_is_ever_negative(self):
        assert not User.objects.filter(balance__lt=0).exists()
        assert not Position.objects.filter(quantity__lt=0).exists()
        assert not Position.objects.filter(average_cost__lt=0).exists()


def test_settlement_matches_the_reference_model_over_random_operations(db):
    run_state_machine_as_test(SettlementMachine, settings=MACHINE_SETTINGS)


def test_the_machine_catches_a_service_refusing_a_buy_that_costs_exactly_the_balance(
    db, monkeypatch
):
    """A copy of the service whose funds check is `<=` instead of `<` must fail the machine."""
    source = inspect.getsource(services._apply)
    broken_source = source.replace(
        "book.balance < txn.transaction_price", "book.balance <= txn.transaction_price"
    )
    assert broken_source != source, "the funds check in _apply changed; update this test"
    namespace = dict(vars(services))
    exec(broken_source, namespace)
    monkeypatch.setattr(services, "_apply", namespace["_apply"])

    # Finding it is enough; shrinking the counterexample would only cost time.
    with pytest.raises(AssertionError):
        run_state_machine_as_test(
            SettlementMachine, settings=settings(MACHINE_SETTINGS, phases=[Phase.generate])
        )
