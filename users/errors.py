"""Errors of the accounts context."""

from stockflow.errors import Conflict, NotAllowed, NotFound


class UnknownUser(NotFound):
    code = "unknown_user"
    message = "No user '{username}'."


class UnknownUserId(UnknownUser):
    message = "No user with id {user_id}."


class NotYourAccount(NotAllowed):
    message = "You may only access your own account."


class DuplicateUsername(Conflict):
    code = "duplicate_username"
    message = "Username '{username}' is already taken."
