"""Git access of the operator: a bounded cache of bare clones read with GitPython.

Synchronous and thread-safe (a lock per repository): call it from a thread pool, e.g.
`await loop.run_in_executor(pool, cache.git_facts, url, secret_data, ref, sha, before_sha)`.
"""

from __future__ import annotations

from conveyor.source.cache import RepoCache
from conveyor.source.credentials import GitCredentials, SecretData, parse_credentials
from conveyor.source.errors import SourceUnavailable, strip_userinfo
from conveyor.source.urls import GitUrl, parse_url

__all__ = [
    "GitCredentials",
    "GitUrl",
    "RepoCache",
    "SecretData",
    "SourceUnavailable",
    "parse_credentials",
    "parse_url",
    "strip_userinfo",
]
