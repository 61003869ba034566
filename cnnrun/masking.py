"""Credentials out of sight: the password of a URL (``postgresql://user:secret@host/db``) masked as ``***`` wherever
cnnrun shows or records a text that may hold one (console lines, error messages, recorded configs and overrides).

The URL syntax is RFC 1738's, as SQLAlchemy and Optuna read it: ``scheme://user:password@host...``. A password may hold
``:`` and ``/``; everything up to the last ``@`` of the token is masked, so an unusual URL is masked too much rather
than too little. Light module.
"""
from __future__ import annotations

import re

MASK = "***"

# scheme://user: then the password up to the token's last "@" (a token ends at whitespace or a quote)
_PASSWORD = re.compile(r"(?P<head>[\w+.-]+://[^\s:/'\"]*:)(?P<password>[^\s'\"]*)(?=@)")


def mask_credentials(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``; other text unchanged."""
    return _PASSWORD.sub(lambda m: m.group("head") + MASK, text)


def has_credentials(text: str) -> bool:
    """Whether ``text`` holds a URL with a password (a masked one, ``***``, counts)."""
    return _PASSWORD.search(text) is not None
