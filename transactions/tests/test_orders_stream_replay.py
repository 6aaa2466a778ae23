"""/ws/orders/ from the outbox: `?since=` replays committed events in seq order, then live ones
once each (duplicates dropped, gaps filled from the outbox), heartbeats, and refused sinces."""

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.utils import timezone

from conftest import WebsocketCommunicator
from events import bus
from events.models import Event
from events.relay import events_prune, events_relay
from events.services import events_record
from stockflow.asgi import application
from stockflow.events import orders_group, publish
from stockflow.streams import orders_streams_close_on_commit
from transactions import consumers
from users.tests.factories import UserFactory

# database_sync_to_async closes connections around each lookup, which a test's wrapping
# transaction would not survive.
pytestmark = pytest.mark.django_db(transaction=True)

INVALID_SINCE = "since must be a whole number: the seq of the last event you saw."


@pytest.fixture(autouse=True)
def relay_by_hand(monkeypatch):
    """Commits enqueue no relay (eager tasks would relay at once): each test relays, or
    publishes, exactly when it means a live event to arrive."""
    monkeypatch.setattr(bus, "_relay_queue", [lambda account_id: None])


def run(scenario):
    async_to_sync(scenario)()


def record(user, *amounts: str) -> list[Event]:
    """Commit one `transfer` event of `user` per amount (with data naming it)."""
    return events_record(
        [(user, "transfer", {"transfer": {"amount": a}, "balance": a}) for a in amounts]
    )


def message(user, seq: int) -> dict:
    """The event as the stream sends it, from the outbox row."""
    event = Event.objects.get(account=user, seq=seq)
    return {
        "event": "transfer",
        "seq": seq,
        "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
        "transfer": {"amount": event.data["balance"]},
        "balance": event.data["balance"],
    }


async def connect(user, query: str = ""):
    path = f"/ws/orders/?token={user.auth_token.key}{query}"
    client = WebsocketCommunicator(application, path)
    assert await client.connect() == (True, None)
    return client


async def receive_all(client, count: int) -> list[dict]:
    return [await client.receive_json_from() for _ in range(count)]


async def publish_seq(user, seq: int) -> None:
    """Send the outbox event `seq` to the account's group, as its relay would."""
    event = await sync_to_async(Event.objects.get)(account=user, seq=seq)
    await sync_to_async(publish)(orders_group(user.pk), event.as_message())


def test_since_0_replays_the_committed_events_in_seq_order_then_a_relayed_one_arrives_once():
    user = UserFactory()
    record(user, "1.00", "2.00")
    record(user, "3.00")
    expected = [message(user, seq) for seq in (1, 2, 3)]

    async def scenario():
        client = await connect(user, "&since=0")
        assert await receive_all(client, 3) == expected
        assert await client.receive_nothing(timeout=0.2)

        await sync_to_async(record)(user, "4.00")
        assert await sync_to_async(events_relay)(account_id=user.pk) == 4  # 1-3 never were

        fourth = await client.receive_json_from()
        assert fourth == await sync_to_async(message)(user, 4)
        assert await client.receive_nothing(timeout=0.2)  # once, though 1-3 were relayed too
        await client.disconnect()

    run(scenario)


def test_since_resumes_after_the_given_seq():
    user = UserFactory()
    record(user, "1.00", "2.00", "3.00", "4.00")
    expected = [message(user, seq) for seq in (3, 4)]

    async def scenario():
        client = await connect(user, "&since=2")
        assert await receive_all(client, 2) == expected
        assert await client.receive_nothing(timeout=0.2)
        await client.disconnect()

    run(scenario)


def test_a_live_message_with_a_seq_already_sent_is_dropped():
    user = UserFactory()
    record(user, "1.00", "2.00")

    async def scenario():
        client = await connect(user, "&since=0")
        assert [m["seq"] for m in await receive_all(client, 2)] == [1, 2]

        await publish_seq(user, 2)  # the relay's copy of what the replay sent
        await publish_seq(user, 1)
        assert await client.receive_nothing(timeout=0.2)

        await sync_to_async(record)(user, "3.00")
        await publish_seq(user, 3)
        await publish_seq(user, 3)  # the relay handed it over twice (at least once)
        assert await client.receive_json_from() == await sync_to_async(message)(user, 3)
        assert await client.receive_nothing(timeout=0.2)
        await client.disconnect()

    run(scenario)


def test_a_live_message_past_a_gap_makes_the_stream_send_the_missing_events_first():
    user = UserFactory()
    record(user, "1.00")

    async def scenario():
        client = await connect(user, "&since=0")
        assert (await client.receive_json_from())["seq"] == 1

        await sync_to_async(record)(user, "2.00", "3.00")
        await publish_seq(user, 3)  # the live message of seq 2 was lost

        assert await receive_all(client, 2) == [
            await sync_to_async(message)(user, 2),
            await sync_to_async(message)(user, 3),
        ]
        await publish_seq(user, 2)  # arriving late: already sent from the outbox
        assert await client.receive_nothing(timeout=0.2)
        await client.disconnect()

    run(scenario)


def test_the_heartbeat_sends_the_last_seq_and_what_a_lost_live_message_missed(settings):
    settings.WS_HEARTBEAT_SECONDS = 0.1
    user = UserFactory()
    record(user, "1.00", "2.00")

    async def scenario():
        client = await connect(user, "&since=0")
        assert [m["seq"] for m in await receive_all(client, 2)] == [1, 2]
        assert await client.receive_json_from() == {
            "type": "heartbeat",
            "event": "heartbeat",
            "seq": 2,
        }

        await sync_to_async(record)(user, "3.00")  # committed, its live message lost
        messages = await receive_all(client, 2)
        for _ in range(5):  # a heartbeat or two may have gone out before the commit
            if messages[0] != {"type": "heartbeat", "event": "heartbeat", "seq": 2}:
                break
            messages = [messages[1], await client.receive_json_from()]
        assert messages == [
            await sync_to_async(message)(user, 3),
            {"type": "heartbeat", "event": "heartbeat", "seq": 3},
        ]
        await client.disconnect()

    run(scenario)


def test_without_a_heartbeat_setting_no_heartbeat_is_sent(settings):
    settings.WS_HEARTBEAT_SECONDS = 0
    user = UserFactory()

    async def scenario():
        client = await connect(user)
        assert await client.receive_nothing(timeout=0.3)
        await client.disconnect()

    run(scenario)


async def assert_refused(client, code: str, detail: str, close_code: int) -> None:
    assert await client.receive_json_from() == {"event": "error", "code": code, "detail": detail}
    assert await client.receive_output(1) == {"type": "websocket.close", "code": close_code}


@pytest.mark.parametrize("since", ["abc", "-1", "1.5", "%201", "%D9%A3"])
def test_a_since_that_is_not_a_whole_number_is_refused_with_invalid_since_and_4400(since):
    user = UserFactory()
    record(user, "1.00")

    async def scenario():
        client = await connect(user, f"&since={since}")
        await assert_refused(client, "invalid_since", INVALID_SINCE, 4400)

    run(scenario)


def test_a_since_past_the_latest_event_is_refused_with_since_ahead_and_4400():
    user = UserFactory()
    record(user, "1.00", "2.00")

    async def scenario():
        client = await connect(user, "&since=3")
        await assert_refused(
            client,
            "since_ahead",
            "since is 3 but this account's latest event is seq 2: a seq this account never "
            "reached (another account's, or another server's).",
            4400,
        )

    run(scenario)


def test_a_since_before_the_pruned_events_is_refused_with_events_pruned_and_4410():
    user = UserFactory()
    events = record(user, "1.00", "2.00", "3.00")
    old = timezone.now() - timedelta(days=40)
    Event.objects.filter(pk__in=[e.pk for e in events[:2]]).update(created_at=old, relayed_at=old)
    assert events_prune(older_than_days=30) == 2

    async def scenario():
        client = await connect(user, "&since=1")
        await assert_refused(
            client,
            "events_pruned",
            "Events up to seq 2 were pruned (kept 30 days): since must be at least 2. Read the "
            "current state from the API, then resume from the oldest kept event.",
            4410,
        )
        resumed = await connect(user, "&since=2")
        assert await resumed.receive_json_from() == await sync_to_async(message)(user, 3)
        await resumed.disconnect()

    run(scenario)


def test_without_since_only_events_after_the_connect_are_sent():
    user = UserFactory()
    record(user, "1.00", "2.00")

    async def scenario():
        client = await connect(user)
        assert await client.receive_nothing(timeout=0.2)
        await publish_seq(user, 2)  # a late relay of one from before: not sent
        assert await client.receive_nothing(timeout=0.2)

        await sync_to_async(record)(user, "3.00")
        await sync_to_async(events_relay)(account_id=user.pk)
        assert await client.receive_json_from() == await sync_to_async(message)(user, 3)
        assert await client.receive_nothing(timeout=0.2)
        await client.disconnect()

    run(scenario)


def test_a_stream_replays_only_its_own_accounts_events():
    alice, bob = UserFactory(), UserFactory()
    record(alice, "1.00")
    record(bob, "7.00", "8.00")

    async def scenario():
        client = await connect(alice, "&since=0")
        assert await client.receive_json_from() == await sync_to_async(message)(alice, 1)
        assert await client.receive_nothing(timeout=0.2)
        await client.disconnect()

    run(scenario)


def test_a_stream_revoked_while_it_catches_up_sends_nothing_after_the_revocation(
    settings, monkeypatch
):
    """A revocation that lands while a heartbeat reads a page of the outbox: the stream
    sends the error and closes, and not one event or heartbeat after it."""
    settings.WS_HEARTBEAT_SECONDS = 0.2
    user = UserFactory()
    read = consumers.messages_after

    async def slow_read(account_id, seq):
        messages = await read(account_id, seq)
        if messages:
            await asyncio.sleep(0.5)  # the revocation arrives meanwhile
        return messages

    monkeypatch.setattr(consumers, "messages_after", slow_read)

    async def scenario():
        client = await connect(user)
        await sync_to_async(record)(user, "1.00", "2.00")  # never relayed: the heartbeat reads
        await asyncio.sleep(0.4)  # a heartbeat is now in its slow read
        await sync_to_async(orders_streams_close_on_commit)(user_id=user.pk)

        error = await client.receive_json_from(timeout=2)
        assert (error["event"], error["code"]) == ("error", "credentials_revoked")
        assert await client.receive_output(timeout=1) == {"type": "websocket.close", "code": 4401}
        assert await client.receive_nothing(timeout=1)

    run(scenario)
