"""The Bearer token every `/v1` request needs when the server has one (compared in constant time,
so the time of a refusal says nothing about how much of a guess was right)."""
from __future__ import annotations

import hmac


def token_ok(expected: str | None, authorization: str | None) -> bool:
    """Whether an ``Authorization`` header carries the token (True when the server has none).

    >>> token_ok("s3cret", "Bearer s3cret"), token_ok("s3cret", "Bearer s3cre"), token_ok(None, None)
    (True, False, True)
    """
    if expected is None:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())
