"""Domain errors: what went wrong, in words and a stable code, and nothing about HTTP.

Services raise a subclass per meaning (unknown ticker, duplicate username, ...), each with
its `code` and its message template written once. The kind a subclass derives from says
whose problem it is; `stockflow.exceptions.exception_handler` alone turns kinds into
statuses. An error about one input field names it in `field`, and is answered in DRF's
field -> messages form like any other validation error.
"""


class DomainError(Exception):
    """A refused operation. Subclasses set `code` and `message` (a `str.format` template)."""

    code = "bad_request"
    message = "The request cannot be carried out."
    field: str | None = None

    def __init__(self, **context):
        self.context = context
        super().__init__(self.message.format(**context))

    @property
    def detail(self) -> str:
        return str(self)


class InvalidInput(DomainError):
    """The input itself is wrong, whatever is stored."""


class NotAllowed(DomainError):
    """The caller may not do this."""

    code = "permission_denied"


class NotFound(DomainError):
    """What the request names does not exist."""

    code = "not_found"


class Conflict(DomainError):
    """The request is well-formed but clashes with what is stored."""

    code = "conflict"


class TooMany(DomainError):
    """The caller holds as many of something (connections, alerts, ...) as a limit allows."""

    code = "limit_reached"


class Gone(DomainError):
    """What the request asks for existed once and was deliberately removed (pruned events)."""

    code = "gone"
