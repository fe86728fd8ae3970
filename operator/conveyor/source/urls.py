"""Git URLs: what git is given, what messages show, and the project path."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from conveyor.source.errors import INVALID, SourceUnavailable, strip_userinfo

SCHEMES = frozenset({"https", "http", "ssh", "git", "file"})
# user@host:path (scp-like ssh); the user part cannot hold a password.
_SCP = re.compile(r"^(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*|/.*)$")


@dataclass(frozen=True, repr=False)
class GitUrl:
    """A parsed repository URL. `git_url` has no password (and, for http(s), no userinfo at
    all: credentials go to git out of band); `display` has no userinfo, for messages and logs."""

    git_url: str
    display: str
    scheme: str  # "ssh" for scp-like URLs
    origin: str  # scheme://host[:port]/ for http(s), used to scope the auth header
    path: str
    userinfo_username: str | None = None
    userinfo_password: str | None = None

    def __repr__(self) -> str:
        return f"GitUrl({self.display!r})"

    @property
    def project_path(self) -> str | None:
        """group/project: the URL path without slashes around it and without `.git`."""
        path = self.path.strip("/").removesuffix(".git").strip("/")
        return path or None


def parse_url(url: str, allowed_schemes: frozenset[str] = SCHEMES) -> GitUrl:
    """Parse `url`, refusing anything that is not a scheme URL or scp-like ssh address (a bare
    path or a leading `-` could otherwise reach git as a local path or an option)."""
    scp = _SCP.match(url)
    if scp and "://" not in url:
        if "ssh" not in allowed_schemes:
            raise SourceUnavailable(f"repository {url}: scheme ssh is not allowed", INVALID)
        return GitUrl(git_url=url, display=url, scheme="ssh", origin="", path=scp["path"])
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as err:
        raise SourceUnavailable(f"repository {strip_userinfo(url)}: invalid URL", INVALID) from err
    scheme = parts.scheme.lower()
    userinfo, _, hostport = parts.netloc.rpartition("@")
    display = parts._replace(netloc=hostport).geturl()
    if scheme not in SCHEMES or any(c.isspace() for c in url) or url.startswith("-"):
        raise SourceUnavailable(f"repository {display}: invalid git URL", INVALID)
    if scheme not in allowed_schemes:
        raise SourceUnavailable(f"repository {display}: scheme {scheme} is not allowed", INVALID)
    if scheme != "file" and not hostport:
        raise SourceUnavailable(f"repository {display}: the URL has no host", INVALID)
    user, has_password, password = userinfo.partition(":")
    git_netloc = hostport
    http = scheme in ("http", "https")
    if scheme == "ssh" and user:
        git_netloc = f"{user}@{hostport}"  # ssh needs the login name; a password is never used
    return GitUrl(
        git_url=parts._replace(netloc=git_netloc).geturl(),
        display=display,
        scheme=scheme,
        origin=f"{scheme}://{hostport}/",
        path=parts.path,
        userinfo_username=unquote(user) if user and http else None,
        userinfo_password=unquote(password) if has_password and http else None,
    )
