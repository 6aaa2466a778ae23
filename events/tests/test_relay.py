"""The relay: RELAY handlers get each event once in seq order and rows are marked relayed;
a failing handler leaves the batch unrelayed; the sweep, pruning, relay marks, `relaying()`."""

from datetime import timedelta

import pytest
from django.utils import timezone

from events import bus
from events.models import Event
from events.relay import events_prune, events_relay, events_relay_stale, relaying
from events.services import events_record
from events.tasks import prune_events_task, relay_events_task, sweep_events_task
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

# A type no app subscribes to: only this module's handlers see it.
PING = "test.ping"


@pytest.fixture
def handlers(monkeypatch):
    """A copy of the bus's subscribers for this test: what it registers is gone afterwards."""
    monkeypatch.setattr(
        bus, "_subscribers", {moment: list(subs) for moment, subs in bus._subscribers.items()}
    )


@pytest.fixture
def relayed(handlers):
    """Every batch a RELAY handler of PING got, as lists of (account_id, seq, data["n"])."""
    batches = []

    @bus.subscribe(PING, on=bus.RELAY)
    def record_relayed(events):
        batches.append([(e.account_id, e.seq, e.data["n"]) for e in events])

    return batches


@pytest.fixture
def committed(handlers):
    """Every batch a COMMIT handler of PING got, as lists of (account_id, data["n"])."""
    batches = []

    @bus.subscribe(PING, on=bus.COMMIT)
    def record_committed(events):
        batches.append([(e.account_id, e.data["n"]) for e in events])

    return batches


@pytest.fixture
def enqueued(monkeypatch):
    """The streams whose relay task was enqueued, in order; the tasks do not run."""
    streams = []
    monkeypatch.setattr(bus, "_relay_queue", [streams.append])
    return streams


def ping(user, *ns: int) -> list[Event]:
    """Record PING events of `user` (None: the market stream) with data {"n": n}. The test's
    transaction never commits, so nothing dispatches or relays them on its own."""
    return events_record([(user, PING, {"n": n}) for n in ns])


def unrelayed(account=None) -> list[int]:
    """The data["n"] of the stream's unrelayed events, in id order."""
    rows = Event.objects.filter(account=account, relayed_at__isnull=True).order_by("id")
    return [event.data["n"] for event in rows]


def age(events: list[Event], **delta) -> None:
    Event.objects.filter(pk__in=[e.pk for e in events]).update(
        created_at=timezone.now() - timedelta(**delta)
    )


# --- events_relay ---------------------------------------------------------------------------


def test_the_relay_hands_each_event_once_in_seq_order_and_marks_it_relayed(relayed):
    alice, bob = UserFactory(), UserFactory()
    ping(alice, 10, 11)
    ping(bob, 20)
    ping(alice, 12)

    assert events_relay(account_id=alice.pk) == 3

    assert relayed == [[(alice.pk, 1, 10), (alice.pk, 2, 11), (alice.pk, 3, 12)]]
    assert unrelayed(alice) == []
    assert unrelayed(bob) == [20]  # another stream: its own relay's work
    assert Event.objects.filter(account=alice, relayed_at__isnull=True).count() == 0

    assert events_relay(account_id=alice.pk) == 0  # nothing left: not handed over again
    assert len(relayed) == 1


def test_the_relay_of_the_market_stream_takes_only_events_of_no_account(relayed):
    user = UserFactory()
    ping(None, 1, 2)
    ping(user, 3)

    assert events_relay(account_id=None) == 2

    assert relayed == [[(None, None, 1), (None, None, 2)]]
    assert (unrelayed(None), unrelayed(user)) == ([], [3])


def test_only_handlers_of_an_events_type_get_it(handlers, relayed):
    others = []
    bus.subscribe("test.other", on=bus.RELAY)(others.append)
    user = UserFactory()
    events_record([(user, PING, {"n": 1}), (user, "test.other", {"n": 2})])

    assert events_relay(account_id=user.pk) == 2

    assert relayed == [[(user.pk, 1, 1)]]
    assert [[(e.seq, e.type) for e in batch] for batch in others] == [[(2, "test.other")]]


def test_a_raising_relay_handler_leaves_the_whole_batch_unrelayed_for_the_next_relay(relayed):
    user = UserFactory()
    ping(user, 1, 2, 3)
    failures = ["channel layer down"]

    @bus.subscribe(PING, on=bus.RELAY)
    def flaky(events):
        if failures:
            raise ConnectionError(failures.pop())

    with pytest.raises(ConnectionError):
        events_relay(account_id=user.pk)
    assert unrelayed(user) == [1, 2, 3]

    assert events_relay(account_id=user.pk) == 3

    # The first handler saw the batch in the failed attempt too: at least once, in order.
    assert relayed == [[(user.pk, 1, 1), (user.pk, 2, 2), (user.pk, 3, 3)]] * 2
    assert unrelayed(user) == []


def test_subscribing_a_handler_twice_registers_it_once(handlers, relayed):
    calls = []

    def handler(events):
        calls.append(len(events))

    bus.subscribe(PING, on=bus.RELAY)(handler)
    bus.subscribe(PING, on=bus.RELAY)(handler)
    ping(UserFactory(), 1)
    events_relay(account_id=Event.objects.get().account_id)

    assert calls == [1]


def test_subscribe_refuses_an_unknown_moment(handlers):
    with pytest.raises(ValueError, match="takes COMMIT or RELAY, not 'later'"):
        bus.subscribe(PING, on="later")


# --- the sweep ------------------------------------------------------------------------------


def test_the_sweep_relays_only_streams_older_than_the_cutoff_and_runs_their_commit_handlers(
    relayed, committed, enqueued
):
    alice, bob, carol = UserFactory(), UserFactory(), UserFactory()
    age(ping(alice, 1, 2), seconds=60)
    ping(bob, 3)  # fresh: its own relay may still be on its way
    age(ping(None, 4), seconds=60)
    age(ping(carol, 5), seconds=60)
    Event.objects.filter(account=carol).update(relayed_at=timezone.now())  # already relayed

    assert events_relay_stale(older_than_seconds=5) == [None, alice.pk]

    assert relayed == [[(None, None, 4)], [(alice.pk, 1, 1), (alice.pk, 2, 2)]]
    assert committed == [[(None, 4)], [(alice.pk, 1), (alice.pk, 2)]]
    assert (unrelayed(alice), unrelayed(None), unrelayed(bob)) == ([], [], [3])
    assert enqueued == []  # the sweep relays them itself, with no task of its own


def test_a_stream_with_an_old_and_a_new_unrelayed_event_is_relayed_whole(relayed, committed):
    user = UserFactory()
    age(ping(user, 1), seconds=60)
    ping(user, 2)

    assert events_relay_stale(older_than_seconds=5) == [user.pk]

    assert relayed == [[(user.pk, 1, 1), (user.pk, 2, 2)]]
    assert committed == [[(user.pk, 1), (user.pk, 2)]]


def test_a_stream_the_sweep_cannot_relay_stays_unrelayed_and_the_others_go_on(relayed, committed):
    alice, bob = UserFactory(), UserFactory()
    age(ping(alice, 1), seconds=60)
    age(ping(bob, 2), seconds=60)

    @bus.subscribe(PING, on=bus.RELAY)
    def fails_for_alice(events):
        if events[0].account_id == alice.pk:
            raise ConnectionError("down")

    assert events_relay_stale(older_than_seconds=5) == [alice.pk, bob.pk]

    assert (unrelayed(alice), unrelayed(bob)) == ([1], [])
    assert committed == [[(bob.pk, 2)]]  # a failed relay runs no COMMIT handler either


def test_the_sweep_task_uses_the_setting(settings, relayed):
    settings.EVENTS_RELAY_SWEEP_AFTER_SECONDS = 120
    user = UserFactory()
    age(ping(user, 1), seconds=60)

    assert sweep_events_task() == 0
    settings.EVENTS_RELAY_SWEEP_AFTER_SECONDS = 30
    assert sweep_events_task() == 1
    assert relayed == [[(user.pk, 1, 1)]]


# --- pruning --------------------------------------------------------------------------------


def test_pruning_deletes_only_relayed_events_older_than_the_retention():
    user = UserFactory()
    old_relayed, old_unrelayed, new_relayed, new_unrelayed = (
        ping(user, 1)[0],
        ping(user, 2)[0],
        ping(user, 3)[0],
        ping(None, 4)[0],
    )
    Event.objects.filter(pk__in=[old_relayed.pk, new_relayed.pk]).update(relayed_at=timezone.now())
    age([old_relayed, old_unrelayed], days=31)
    age([new_relayed, new_unrelayed], days=29)

    assert events_prune(older_than_days=30) == 1

    assert set(Event.objects.values_list("pk", flat=True)) == {
        old_unrelayed.pk,  # never relayed: never pruned, however old
        new_relayed.pk,
        new_unrelayed.pk,
    }
    assert events_prune(older_than_days=30) == 0


def test_the_prune_task_keeps_events_retention_days(settings):
    settings.EVENTS_RETENTION_DAYS = 7
    events = ping(UserFactory(), 1, 2)
    Event.objects.update(relayed_at=timezone.now())
    age(events[:1], days=8)
    age(events[1:], days=6)

    assert prune_events_task() == 1
    assert list(Event.objects.values_list("seq", flat=True)) == [2]


# --- asking for a relay ---------------------------------------------------------------------


def test_the_relay_task_clears_the_streams_mark_and_relays_it(relayed, enqueued):
    user = UserFactory()
    ping(user, 1)
    assert bus.claim_relay(user.pk) is True
    assert bus.claim_relay(user.pk) is False  # marked: a relay is on its way

    relay_events_task(user.pk)

    assert relayed == [[(user.pk, 1, 1)]]
    assert bus.claim_relay(user.pk) is True  # the mark was cleared


def test_a_burst_of_relay_requests_enqueues_one_relay_per_stream(enqueued):
    alice, bob = UserFactory(), UserFactory()

    bus.request_relay({alice.pk})
    bus.request_relay({alice.pk})
    bus.request_relay({bob.pk, None, alice.pk})
    assert enqueued == [alice.pk, None, bob.pk]  # the market first, then in id order

    relay_events_task(alice.pk)  # it started: the next commit asks again
    enqueued.clear()
    bus.request_relay({alice.pk, bob.pk})
    assert enqueued == [alice.pk]


def test_a_stream_a_queued_task_claimed_gets_no_relay_task_of_its_own(enqueued):
    user = UserFactory()
    assert bus.claim_relay(user.pk) is True

    bus.request_relay({user.pk})

    assert enqueued == []


def test_a_failed_enqueue_lets_the_next_request_enqueue(monkeypatch):
    user = UserFactory()
    attempts = []

    def broker_down(account_id):
        attempts.append(account_id)
        raise ConnectionError("broker down")

    monkeypatch.setattr(bus, "_relay_queue", [broker_down])
    with pytest.raises(ConnectionError):
        bus.request_relay({user.pk})
    with pytest.raises(ConnectionError):
        bus.request_relay({user.pk})

    assert attempts == [user.pk, user.pk]


def test_dispatch_runs_commit_handlers_then_asks_for_the_relay_of_each_stream(
    committed, enqueued, django_capture_on_commit_callbacks
):
    alice, bob = UserFactory(), UserFactory()

    with django_capture_on_commit_callbacks(execute=True):
        events_record([(bob, PING, {"n": 1}), (alice, PING, {"n": 2}), (None, PING, {"n": 3})])

    assert committed == [[(bob.pk, 1), (alice.pk, 2), (None, 3)]]
    assert enqueued == [None, *sorted([alice.pk, bob.pk])]


def test_a_failing_commit_handler_does_not_stop_the_others_nor_the_relay_request(
    committed, enqueued, handlers, django_capture_on_commit_callbacks
):
    @bus.subscribe(PING, on=bus.COMMIT)
    def broken(events):
        raise RuntimeError("cache down")

    later = []
    bus.subscribe(PING, on=bus.COMMIT)(later.append)
    user = UserFactory()

    with django_capture_on_commit_callbacks(execute=True):
        ping(user, 1)

    assert committed == [[(user.pk, 1)]]
    assert [[e.seq for e in batch] for batch in later] == [[1]]
    assert enqueued == [user.pk]


def test_with_eager_tasks_a_commit_relays_its_events(relayed, django_capture_on_commit_callbacks):
    user = UserFactory()

    with django_capture_on_commit_callbacks(execute=True):
        ping(user, 1, 2)

    assert relayed == [[(user.pk, 1, 1), (user.pk, 2, 2)]]
    assert unrelayed(user) == []


# --- relaying() -----------------------------------------------------------------------------


def test_relaying_collects_the_streams_commits_touch_and_relays_them_when_it_ends(
    relayed, enqueued, django_capture_on_commit_callbacks
):
    alice, bob = UserFactory(), UserFactory()
    assert bus.claim_relay(alice.pk) is True  # as request_settlement claims before enqueuing
    ping(alice, 1)  # committed before the task started

    with relaying(alice.pk):
        with django_capture_on_commit_callbacks(execute=True):
            ping(bob, 2)
            ping(None, 3)
        assert relayed == []  # collected, not relayed yet
        assert enqueued == []  # and no relay task of their own

    assert relayed == [[(None, None, 3)], [(alice.pk, 1, 1)], [(bob.pk, 1, 2)]]
    assert enqueued == []
    assert (unrelayed(alice), unrelayed(bob), unrelayed(None)) == ([], [], [])
    assert bus.claim_relay(alice.pk) is True  # its claim was cleared


def test_relaying_relays_even_when_the_task_raises(relayed):
    user = UserFactory()
    ping(user, 1)

    with pytest.raises(RuntimeError), relaying(user.pk):
        raise RuntimeError("settlement failed")

    assert relayed == [[(user.pk, 1, 1)]]


def test_outside_relaying_requests_enqueue_again(enqueued, django_capture_on_commit_callbacks):
    user = UserFactory()
    with relaying(), django_capture_on_commit_callbacks(execute=True):
        ping(user, 1)
    assert enqueued == []

    with django_capture_on_commit_callbacks(execute=True):
        ping(user, 2)
    assert enqueued == [user.pk]
