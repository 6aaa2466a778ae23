"""A response for JSON the view already has as bytes (a cached read), rendered as DRF would."""

from django.http import HttpResponse


class JSONBytes(HttpResponse):
    """Returned from a DRF view, it keeps the view's headers (Allow, Vary) but skips content
    negotiation and rendering: the bytes were rendered by JSONRenderer when cached."""

    def __init__(self, body: bytes, status: int = 200):
        super().__init__(body, content_type="application/json", status=status)
