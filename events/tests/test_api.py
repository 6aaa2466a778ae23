"""GET /events/ (and /api/events/): the owner's events after `since`, oldest first, paginated;
staff read any account's; refused, unknown, malformed, ahead and pruned `since` answers."""

from datetime import timedelta

import pytest
from django.utils import timezone

from events.models import Event
from events.relay import events_prune
from events.services import events_record
from stockflow.events import as_json
from users.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

SINCE_AHEAD = (
    "since is {since} but this account's latest event is seq {latest}: a seq this account "
    "never reached (another account's, or another server's)."
)
PRUNED = (
    "Events up to seq {through} were pruned (kept 30 days): since must be at least {through}. "
    "Read the current state from the API, then resume from the oldest kept event."
)


def record(user, count: int, type_: str = "transfer") -> list[Event]:
    """`count` events of `user`, each with data {"n": its position in this call}."""
    return events_record([(user, type_, {"n": n}) for n in range(count)])


def item(event: Event) -> dict:
    event.refresh_from_db()
    return {
        "seq": event.seq,
        "type": event.type,
        "created_at": as_json(event.created_at),
        "data": event.data,
    }


def seqs(response) -> list[int]:
    return [result["seq"] for result in response.json()["results"]]


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_the_owner_reads_their_own_events_oldest_first_in_a_page_envelope(
    prefix, user_client, user
):
    mine = record(user, 2) + record(user, 1, "cancelled")
    record(UserFactory(), 2)  # another account's: never listed

    response = user_client.get(f"{prefix}/events/")

    assert response.status_code == 200
    assert response.json() == {
        "count": 3,
        "next": None,
        "previous": None,
        "results": [item(event) for event in mine],
    }


def test_the_route_also_answers_without_the_trailing_slash(user_client, user):
    record(user, 1)
    response = user_client.get("/events")
    assert (response.status_code, seqs(response)) == (200, [1])


@pytest.mark.parametrize("path", ["/events/", "/api/events/"])
def test_without_a_token_the_answer_is_401(path, api_client, user):
    record(user, 1)
    response = api_client.get(path)
    assert response.status_code == 401
    assert response.json() == {
        "detail": "Authentication credentials were not provided.",
        "code": "not_authenticated",
    }


def test_since_lists_only_the_events_after_it(user_client, user):
    record(user, 5)

    assert seqs(user_client.get("/events/?since=0")) == [1, 2, 3, 4, 5]
    assert seqs(user_client.get("/events/?since=3")) == [4, 5]
    response = user_client.get("/events/?since=5")  # the latest: nothing new, not an error
    assert (response.status_code, response.json()["count"], seqs(response)) == (200, 0, [])


def test_an_empty_since_is_the_same_as_none(user_client, user):
    record(user, 2)
    response = user_client.get("/events/?since=")
    assert (response.status_code, seqs(response)) == (200, [1, 2])


def test_a_user_without_events_gets_an_empty_page_for_since_0(user_client):
    response = user_client.get("/events/?since=0")
    assert response.status_code == 200
    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}


def test_limit_pages_the_events_and_next_keeps_since(user_client, user):
    record(user, 5)

    first = user_client.get("/events/?since=1&limit=2")
    assert first.status_code == 200
    assert first.json()["count"] == 4
    assert first.json()["next"] == "http://testserver/events/?limit=2&offset=2&since=1"
    assert first.json()["previous"] is None
    assert seqs(first) == [2, 3]

    second = user_client.get(first.json()["next"])
    assert (second.json()["count"], second.json()["next"], seqs(second)) == (4, None, [4, 5])
    assert second.json()["previous"] == "http://testserver/events/?limit=2&since=1"


def test_staff_read_another_accounts_events_by_id_or_by_username(staff_client):
    alice = UserFactory(username="alice")
    record(alice, 3)
    record(UserFactory(), 1)

    by_id = staff_client.get(f"/events/?user={alice.pk}")
    by_name = staff_client.get("/events/?user=alice&since=1")

    assert (by_id.status_code, seqs(by_id)) == (200, [1, 2, 3])
    assert (by_name.status_code, seqs(by_name)) == (200, [2, 3])
    assert {r["data"]["n"] for r in by_id.json()["results"]} == {0, 1, 2}


def test_staff_without_user_read_their_own_account(staff_client, staff):
    record(staff, 1)
    record(UserFactory(), 2)
    assert seqs(staff_client.get("/events/")) == [1]


@pytest.mark.parametrize("name", ["other", "{other_id}", "nobody", "999999"])
def test_a_non_staff_caller_naming_any_other_account_is_refused_with_403(name, user_client):
    other = UserFactory(username="other")
    record(other, 1)

    response = user_client.get(f"/events/?user={name.format(other_id=other.pk)}")

    assert response.status_code == 403
    assert response.json() == {
        "detail": "You may only access your own account.",
        "code": "permission_denied",
    }


def test_a_caller_naming_their_own_account_reads_it(user_client, user):
    record(user, 2)
    assert seqs(user_client.get(f"/events/?user={user.pk}")) == [1, 2]
    assert seqs(user_client.get(f"/events/?user={user.username}")) == [1, 2]


@pytest.mark.parametrize("name", ["nobody", "999999"])
def test_staff_naming_an_unknown_account_get_404(name, staff_client):
    response = staff_client.get(f"/events/?user={name}")
    assert response.status_code == 404
    assert response.json() == {"detail": f"No user '{name}'.", "code": "unknown_user"}


@pytest.mark.parametrize("since", ["abc", "-1", "1.5", "1e3", " 1"])
def test_a_since_that_is_not_a_whole_number_is_a_400_field_error(since, user_client, user):
    record(user, 3)
    response = user_client.get("/events/", {"since": since})
    assert response.status_code == 400
    assert response.json() == {"since": ["A valid integer is required."]}


def test_a_since_past_the_latest_event_is_a_400_field_error_naming_both(user_client, user):
    record(user, 3)

    response = user_client.get("/events/?since=4")

    assert response.status_code == 400
    assert response.json() == {"since": [SINCE_AHEAD.format(since=4, latest=3)]}


def test_a_since_is_ahead_for_an_account_without_events(user_client):
    response = user_client.get("/events/?since=1")
    assert response.status_code == 400
    assert response.json() == {"since": [SINCE_AHEAD.format(since=1, latest=0)]}


def test_another_accounts_seq_is_not_a_valid_since(user_client, user):
    record(user, 1)
    record(UserFactory(), 5)
    response = user_client.get("/events/?since=5")
    assert response.json() == {"since": [SINCE_AHEAD.format(since=5, latest=1)]}


@pytest.fixture
def pruned(user):
    """Five events of `user`, the first three 40 days old and relayed, then pruned."""
    events = record(user, 5)
    old = timezone.now() - timedelta(days=40)
    Event.objects.filter(pk__in=[e.pk for e in events[:3]]).update(created_at=old, relayed_at=old)
    assert events_prune(older_than_days=30) == 3
    return events


@pytest.mark.parametrize("since", [0, 1, 2])
def test_a_since_older_than_the_oldest_kept_event_is_410_events_pruned(since, pruned, user_client):
    response = user_client.get(f"/events/?since={since}")

    assert response.status_code == 410
    assert response.json() == {"detail": PRUNED.format(through=3), "code": "events_pruned"}


def test_a_since_just_before_the_oldest_kept_event_resumes_from_it(pruned, user_client):
    response = user_client.get("/events/?since=3")
    assert (response.status_code, seqs(response)) == (200, [4, 5])


def test_without_since_every_kept_event_is_listed_after_pruning(pruned, user_client):
    response = user_client.get("/events/")
    assert (response.status_code, response.json()["count"], seqs(response)) == (200, 2, [4, 5])


def test_when_every_event_was_pruned_only_the_latest_seq_resumes(user, user_client):
    events = record(user, 2)
    old = timezone.now() - timedelta(days=40)
    Event.objects.filter(pk__in=[e.pk for e in events]).update(created_at=old, relayed_at=old)
    assert events_prune(older_than_days=30) == 2

    gone = user_client.get("/events/?since=1")
    resumed = user_client.get("/events/?since=2")

    assert (gone.status_code, gone.json()["code"]) == (410, "events_pruned")
    assert gone.json()["detail"] == PRUNED.format(through=2)
    assert (resumed.status_code, seqs(resumed)) == (200, [])


def test_new_events_after_pruning_go_on_from_the_accounts_sequence(pruned, user, user_client):
    record(user, 1)
    assert seqs(user_client.get("/events/?since=3")) == [4, 5, 6]
