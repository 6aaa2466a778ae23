"""Refuse request bodies over DATA_UPLOAD_MAX_MEMORY_SIZE before anything reads them.

DRF parses JSON from the request stream, which Django's own limit (checked when
`request.body` is read) does not cover, so the limit is enforced here from the
Content-Length header; a body without one is not read by Django at all.
"""

from django.conf import settings

from .exceptions import json_error


class BodySizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return json_error(400, "Content-Length is not a number.", "bad_content_length")
        if limit is not None and length > limit:
            return json_error(413, f"The request body exceeds {limit} bytes.", "request_too_large")
        return self.get_response(request)
