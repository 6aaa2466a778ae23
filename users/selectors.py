"""Account reads: who may act on which account, and the cached account detail.

An account is readable and tradable by its owner and by staff. A caller naming another
account is refused before any lookup, so they cannot learn which other accounts exist;
staff naming an unknown one learn that it does not exist.
"""

from collections.abc import Callable
from typing import Any

from stockflow.cache import cached_json, user_namespace
from stockflow.text import canonical_username

from .errors import NotYourAccount, UnknownUser, UnknownUserId
from .models import User


def _is_caller(caller: User, user_id: int | None, username: str | None) -> bool:
    # The name's canonical form, as User.objects.named compares it: any spelling that finds
    # the caller's account is the caller.
    return (user_id is not None and caller.pk == user_id) or (
        username is not None
        and canonical_username(caller.get_username()) == canonical_username(username)
    )


def account_check_access(*, caller: User, user_id: int | None = None, username: str | None = None):
    """Refuse (NotYourAccount) unless the caller is staff or is the account named."""
    if not (caller.is_staff or _is_caller(caller, user_id, username)):
        raise NotYourAccount()


def account_for(*, caller: User, user_id: int | None = None, username: str | None = None) -> User:
    """The account named by id or username, if the caller may act on it."""
    account_check_access(caller=caller, user_id=user_id, username=username)
    if _is_caller(caller, user_id, username):
        return caller  # authentication already loaded the row
    if user_id is not None:
        account = User.objects.filter(pk=user_id).first()
        if account is None:
            raise UnknownUserId(user_id=user_id)
        return account
    account = User.objects.named(username).first()
    if account is None:
        raise UnknownUser(username=username)
    return account


def user_detail_json(*, username: str, represent: Callable[[dict], Any]) -> bytes:
    """The response's JSON bytes (`represent` turns the detail into response data) for
    `{id, username, balance, reserved, buying_power, created_at}` of the account called
    `username` (any spelling); cached until the account's next change commits."""

    def load():
        user = User.objects.named(username).first()
        if user is None:
            return None
        return represent(
            {
                "id": user.pk,
                "username": user.username,
                "balance": user.balance,
                "reserved": user.reserved,
                "buying_power": user.buying_power,
                "created_at": user.created_at,
            }
        )

    body = cached_json(user_namespace(username), "detail", load)
    if body is None:
        raise UnknownUser(username=username)
    return body
