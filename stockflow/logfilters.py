"""Log filters: an API token never reaches a log line.

WebSocket clients that cannot set headers (browsers) authenticate with `?token=<key>`, and
uvicorn logs every handshake's path with its query string (`"WebSocket /ws/orders/?token=…"
[accepted]`), as it logs every HTTP request line.
"""

import logging
import re

TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s\"']*", re.IGNORECASE)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = TOKEN_IN_QUERY.sub(r"\1[redacted]", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True
