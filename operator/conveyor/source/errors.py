"""The one error of git access, and the scrubbing that keeps secrets out of its message."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Why a reason code: callers map it to a condition reason without parsing the message.
UNREACHABLE = "Unreachable"
AUTH_FAILED = "AuthenticationFailed"
HOST_KEY = "HostKeyVerificationFailed"
REF_NOT_FOUND = "RefNotFound"
SHA_NOT_FOUND = "ShaNotFound"
PATH_NOT_FOUND = "PathNotFound"
TOO_LARGE = "TooLarge"
TIMEOUT = "Timeout"
INVALID = "Invalid"
GIT_FAILED = "GitFailed"

# scheme://userinfo@ -> scheme:// (userinfo may be a token, e.g. https://oauth2:glpat-x@host).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s'\"]*@")
_DETAIL_MAX = 300
# Lines git adds to every remote failure; the line before them says what went wrong.
_GENERIC = (
    "could not read from remote repository",
    "please make sure you have the correct access rights",
    "and the repository exists",
)


class SourceUnavailable(Exception):
    """A repository could not be read. The message names the repository without userinfo and
    never contains a credential; `reason` is one of the constants of this module."""

    def __init__(self, message: str, reason: str = GIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason

    def __str__(self) -> str:
        return self.message


def strip_userinfo(text: str) -> str:
    """Remove `user:password@` from every URL in `text`."""
    return _USERINFO.sub(r"\1", text)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without URL userinfo and without any of `secrets` (longest first, so a secret
    that contains another is replaced whole)."""
    text = strip_userinfo(text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def stderr_detail(stderr: str, secrets: Iterable[str] = ()) -> str:
    """The most telling line of git's stderr (the first that is neither a hint nor git's
    generic advice, e.g. ssh's own reason), scrubbed and short."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return ""
    telling = [
        ln
        for ln in lines
        if not ln.lower().startswith(("warning:", "hint:"))
        and not any(g in ln.lower() for g in _GENERIC)
    ]
    best = (telling or lines)[0]
    best = scrub(best, secrets)
    return best if len(best) <= _DETAIL_MAX else best[: _DETAIL_MAX - 3] + "..."
