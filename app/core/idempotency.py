"""The `Idempotency-Key` header of API creates (the IETF httpapi draft, as
Stripe and others use it): what a valid key is, and what makes two requests
the same. app.models.IdempotencyKey keeps the keys; app.services.predictions
uses them."""

import hashlib
import json
import re

MAX_LENGTH = 255
# Visible ASCII but the quote and backslash (the draft's sf-string, with nothing to unescape).
PATTERN = rf"^[\x21\x23-\x5b\x5d-\x7e]{{1,{MAX_LENGTH}}}$"
_KEY = re.compile(PATTERN)
PROBLEM = (
    f'An Idempotency-Key is 1-{MAX_LENGTH} visible ASCII characters, with no space, quote (") or backslash: '
    "a UUID, for example."
)


def parse(raw):
    """The key of a header value, bare or quoted (as the draft writes it);
    ValueError(PROBLEM) for anything else."""
    key = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
    if not _KEY.fullmatch(key):
        raise ValueError(PROBLEM)
    return key


def fingerprint(endpoint, body):
    """What a request asks for (its endpoint and JSON body, whatever the order
    of the body's keys), to tell a retry from another request under the same key."""
    canonical = json.dumps([endpoint, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
