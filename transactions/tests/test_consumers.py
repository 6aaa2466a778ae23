"""The orders stream in-process: token authentication at the handshake, one user's events
only, and streams that close once their credentials are revoked, through stockflow.asgi's
application on the in-memory channel layer."""

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from rest_framework.authtoken.models import Token

from conftest import WebsocketCommunicator
from stockflow.asgi import application
from stockflow.events import orders_group, publish
from users.models import User
from users.tests.factories import UserFactory

# database_sync_to_async closes connections around each lookup, which a test's wrapping
# transaction would not survive.
pytestmark = pytest.mark.django_db(transaction=True)


def run(scenario):
    async_to_sync(scenario)()


def order_event(name: str, order_id: int, user_id: int, seq: int = 1) -> dict:
    """An order event as the relay publishes it: numbered in its account's sequence."""
    return {
        "event": name,
        "seq": seq,
        "order": {"id": order_id, "user_id": user_id},
        "balance": "1.00",
    }


def authorization(value: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", value.encode())]


async def connect(path: str = "/ws/orders/", headers: list | None = None):
    client = WebsocketCommunicator(application, path, headers=headers)
    return client, await client.connect()


@pytest.mark.parametrize(
    ("path", "header"),
    [
        ("/ws/orders/", None),
        ("/ws/orders/?token=", None),
        ("/ws/orders/?token=0000000000000000000000000000000000000000", None),
        ("/ws/orders/", "Token 0000000000000000000000000000000000000000"),
        ("/ws/orders/", "Token"),
        ("/ws/orders/", "Bearer {key}"),  # a valid key under another scheme
        ("/ws/orders/?token={key}", "Basic {key}"),  # a malformed header is not skipped
    ],
)
def test_the_handshake_is_refused_without_a_valid_token(path, header):
    key = UserFactory().auth_token.key
    headers = authorization(header.format(key=key)) if header else None

    async def scenario():
        _, outcome = await connect(path.format(key=key), headers)
        assert outcome == (False, 1000)  # closed before accept: the server answers 403

    run(scenario)


def test_the_handshake_is_refused_for_a_deactivated_account():
    user = UserFactory(is_active=False)

    async def scenario():
        _, outcome = await connect(headers=authorization(f"Token {user.auth_token.key}"))
        assert outcome == (False, 1000)

    run(scenario)


@pytest.mark.parametrize(
    ("path", "header"),
    [
        ("/ws/orders/", "Token {key}"),
        ("/ws/orders", "token {key}"),  # DRF reads the keyword in any case
        ("/ws/orders/?token={key}", None),
        ("/ws/orders?token={key}", None),
        ("/ws/orders/?token=0000000000000000000000000000000000000000", "Token {key}"),
    ],
)
def test_a_valid_token_in_the_header_or_the_query_opens_the_callers_stream(path, header):
    user = UserFactory()
    key = user.auth_token.key
    headers = authorization(header.format(key=key)) if header else None

    async def scenario():
        client, outcome = await connect(path.format(key=key), headers)
        assert outcome == (True, None)
        await sync_to_async(publish)(orders_group(user.pk), order_event("submitted", 7, user.pk))
        assert await client.receive_json_from() == order_event("submitted", 7, user.pk)
        await client.disconnect()

    run(scenario)


def test_a_user_receives_only_their_own_order_events():
    alice, bob = UserFactory(), UserFactory()

    async def scenario():
        alice_client, _ = await connect(headers=authorization(f"Token {alice.auth_token.key}"))
        bob_client, _ = await connect(f"/ws/orders/?token={bob.auth_token.key}")
        # Bob asking for Alice's stream by any parameter still gets his own.
        nosy, _ = await connect(f"/ws/orders/?token={bob.auth_token.key}&user_id={alice.pk}")
        await sync_to_async(publish)(orders_group(alice.pk), order_event("submitted", 1, alice.pk))
        await sync_to_async(publish)(
            orders_group(alice.pk), order_event("completed", 1, alice.pk, seq=2)
        )
        await sync_to_async(publish)(orders_group(bob.pk), order_event("failed", 2, bob.pk))

        assert await alice_client.receive_json_from() == order_event("submitted", 1, alice.pk)
        assert await alice_client.receive_json_from() == order_event(
            "completed", 1, alice.pk, seq=2
        )
        assert await alice_client.receive_nothing(timeout=0.2)
        for client in (bob_client, nosy):
            assert await client.receive_json_from() == order_event("failed", 2, bob.pk)
            assert await client.receive_nothing(timeout=0.1)
        for client in (alice_client, bob_client, nosy):
            await client.disconnect()

    run(scenario)


def test_a_disconnected_client_leaves_its_group():
    user = UserFactory()

    async def scenario():
        client, _ = await connect(headers=authorization(f"Token {user.auth_token.key}"))
        assert orders_group(user.pk) in get_channel_layer().groups
        await client.disconnect()
        assert orders_group(user.pk) not in get_channel_layer().groups

    run(scenario)


# --- a stream follows its credentials ------------------------------------------------------

REVOKED = {
    "event": "error",
    "code": "credentials_revoked",
    "detail": "The token was deleted, the account deactivated or its password changed: "
    "connect again with a valid token.",
}


def delete_token(user):
    user.auth_token.delete()


def deactivate(user):
    user.is_active = False
    user.save()


def change_password(user):
    user.set_password("a-new-password-2025")
    user.save()


async def assert_closed_as_revoked(client, timeout: float = 2):
    assert await client.receive_json_from(timeout) == REVOKED
    assert await client.receive_output(timeout) == {"type": "websocket.close", "code": 4401}


@pytest.mark.parametrize("revoke", [delete_token, deactivate, change_password])
def test_revoked_credentials_close_the_accounts_streams_with_4401_within_2_s(revoke):
    alice, bob = UserFactory(), UserFactory()

    async def scenario():
        by_header, _ = await connect(headers=authorization(f"Token {alice.auth_token.key}"))
        by_query, _ = await connect(f"/ws/orders/?token={alice.auth_token.key}")
        bobs, _ = await connect(f"/ws/orders/?token={bob.auth_token.key}")

        await sync_to_async(revoke)(alice)

        for client in (by_header, by_query):
            await assert_closed_as_revoked(client)
        assert await bobs.receive_nothing(timeout=0.2)
        await sync_to_async(publish)(orders_group(bob.pk), order_event("submitted", 3, bob.pk))
        assert await bobs.receive_json_from() == order_event("submitted", 3, bob.pk)
        await bobs.disconnect()

    run(scenario)


def test_a_deleted_token_closes_only_its_own_streams_not_those_of_the_new_token():
    user = UserFactory()
    old_key = user.auth_token.key

    async def scenario():
        old, _ = await connect(f"/ws/orders/?token={old_key}")
        await sync_to_async(user.auth_token.delete)()
        await assert_closed_as_revoked(old)
        new_key = (await sync_to_async(Token.objects.create)(user=user)).key
        new, outcome = await connect(f"/ws/orders/?token={new_key}")
        assert outcome == (True, None)

        await sync_to_async(Token.objects.filter(key=old_key).delete)()  # a late duplicate
        assert await new.receive_nothing(timeout=0.2)
        await new.disconnect()

    run(scenario)


def test_a_profile_change_keeps_the_stream_open():
    user = UserFactory()

    async def scenario():
        client, _ = await connect(f"/ws/orders/?token={user.auth_token.key}")
        user.email = "new@example.com"
        await sync_to_async(user.save)()
        assert await client.receive_nothing(timeout=0.3)
        await client.disconnect()

    run(scenario)


@pytest.mark.parametrize(
    "bypass",
    [
        lambda user: User.objects.filter(pk=user.pk).update(is_active=False),
        lambda user: connection.cursor().execute(
            "DELETE FROM authtoken_token WHERE user_id = %s", [user.pk]
        ),
        lambda user: User.objects.filter(pk=user.pk).update(password="md5$other$0"),
    ],
    ids=["deactivated", "token deleted", "password changed"],
)
def test_a_change_no_signal_saw_closes_the_stream_at_the_next_recheck(bypass, settings):
    settings.WS_AUTH_RECHECK_SECONDS = 0.2
    user, other = UserFactory(), UserFactory()

    async def scenario():
        client, _ = await connect(f"/ws/orders/?token={user.auth_token.key}")
        others, _ = await connect(f"/ws/orders/?token={other.auth_token.key}")
        await sync_to_async(bypass)(user)
        await assert_closed_as_revoked(client, timeout=1)
        assert await others.receive_nothing(timeout=0.5)  # two rechecks found nothing to do
        await others.disconnect()

    run(scenario)


def test_a_token_deleted_while_the_stream_joins_its_group_refuses_the_handshake(monkeypatch):
    """The deletion commits after the handshake's first read and before the join: its closing
    message went to a group the stream was not in yet, so the read after the join decides."""
    from transactions.consumers import OrdersConsumer

    user = UserFactory()
    join = OrdersConsumer.join

    async def join_while_the_token_is_deleted(self, groups):
        await sync_to_async(Token.objects.filter(user=user).delete)()
        await join(self, groups)

    monkeypatch.setattr(OrdersConsumer, "join", join_while_the_token_is_deleted)

    async def scenario():
        _, outcome = await connect(f"/ws/orders/?token={user.auth_token.key}")
        assert outcome == (False, 1000)  # closed before accept: the server answers 403

    run(scenario)
