"""Which Environment object serves a job's environment name (pure).

GitLab's environment names are free-form (`review/$CI_COMMIT_REF_NAME`, `Production`); object
names are not. A name is served, in this order, by the Environment of that exact name, by the one
named after its slug (CI_ENVIRONMENT_SLUG, e.g. `review-feature-x-1a2b3c`), or by one whose
`spec.names` patterns match it, the most specific first (`review/*`: one Environment for every
review app). A name that
none serves is a plain environment: the job runs without gate, credentials or target, as GitLab
runs an environment nobody configured.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from conveyor.api.meta import DNS_SUBDOMAIN_MAX, DNS_SUBDOMAIN_PATTERN
from conveyor.engine.variables.predefined import environment_slug


def object_name(name: str) -> str:
    """The name of the Environment object that serves `name` by name."""
    if len(name) <= DNS_SUBDOMAIN_MAX and re.match(DNS_SUBDOMAIN_PATTERN, name):
        return name
    return environment_slug(name)


def pattern_matches(pattern: str, name: str) -> bool:
    """GitLab's environment scopes: `*` stands for any characters, `/` included."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, name) is not None


def resolve_environment(
    name: str, environments: Iterable[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The Environment (body) that serves environment `name`, of those of one namespace."""
    bodies = sorted(environments, key=lambda b: b["metadata"]["name"])
    by_name = {b["metadata"]["name"]: b for b in bodies}
    for candidate in (name, object_name(name)):
        if candidate in by_name:
            return by_name[candidate]
    # The most specific pattern wins (the most characters that are not *), as GitLab's
    # environment scopes do; then the Environment's name, for a deterministic choice.
    matches = [
        (-len(p.replace("*", "")), b["metadata"]["name"], b)
        for b in bodies
        for p in (b.get("spec") or {}).get("names") or ()
        if pattern_matches(p, name)
    ]
    return min(matches, key=lambda m: (m[0], m[1]))[2] if matches else None


def target_namespace(template: str, name: str) -> str:
    """The Environment's `spec.namespace` for environment `name`: `$CI_ENVIRONMENT_SLUG` (or
    `${CI_ENVIRONMENT_SLUG}`) in it is the name's slug, so a family of review apps gets a
    namespace each."""
    slug = environment_slug(name)
    return template.replace("${CI_ENVIRONMENT_SLUG}", slug).replace("$CI_ENVIRONMENT_SLUG", slug)
