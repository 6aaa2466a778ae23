"""gunicorn's settings for every way StockFlow serves HTTP: Procfile, compose and `bin/run`.

gunicorn reads `./gunicorn.conf.py` on its own; the Procfile and `bin/run` name it anyway.
Flags on the command line win over this file (`bin/run`'s embedded mode: 1 worker, 4 threads).

The request limits are set above Django's own (MAX_REQUEST_LINE_BYTES, MAX_HEADER_BYTES in
settings), so an oversized request line or header reaches Django and gets the API's JSON
414 / 431 instead of gunicorn's HTML page. gunicorn still answers with its HTML page beyond
these ceilings: a request line over 8190 bytes, a header line over 32768 bytes, or more than
100 headers.
"""

import os

wsgi_app = "stockflow.wsgi"
# An empty variable means the default, as `${WEB_BIND:-...}` does in a shell.
bind = os.environ.get("WEB_BIND") or "127.0.0.1:8000"
workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
# More than 1 makes gunicorn use its gthread worker, which keeps client connections alive.
threads = int(os.environ.get("WEB_THREADS") or 1)
timeout = int(os.environ.get("WEB_TIMEOUT") or 30)
accesslog = "-"

# 8190 is the most gunicorn accepts (it clamps larger values); 0 would mean no limit at all,
# buffering any request line a client sends.
limit_request_line = 8190
# Per header line (name, ": ", value and CRLF): four times Django's default limit, so
# realistic oversized headers (big cookies, long tokens) still reach Django.
limit_request_field_size = 32768
# gunicorn's default, stated: Django does not limit the number of headers.
limit_request_fields = 100
