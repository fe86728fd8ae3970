"""The operator's identity, checked at start against what the admission policies exempt.

Conveyor's admission policies (deploy/30-admission.yaml) let exactly one identity write an
Approval's policy and status, create Jobs with Conveyor's labels, and set a run's pusher: the
operator's. An operator running under another identity would be refused on every gated run
(403, retried forever) while looking healthy, so it refuses to start and says why instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

POLICY_GROUP, POLICY_VERSION = "admissionregistration.k8s.io", "v1"
PART_OF = "app.kubernetes.io/part-of=conveyor"
# The policies name the operator in these, comparing the requester with one literal username.
OPERATOR_CONDITION, OPERATOR_VARIABLE = "not-the-operator", "isOperator"
_EXEMPT = re.compile(r"request\.userInfo\.username\s*[!=]=\s*'([^']+)'")


class IdentityMismatch(Exception):
    """The operator is not the identity the admission policies exempt."""


def exempted(policies: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    """Policy name -> the usernames it exempts as the operator (pure): those its match condition
    `not-the-operator` and its variable `isOperator` name (deploy/30-admission.yaml's header)."""
    found: dict[str, set[str]] = {}
    for policy in policies:
        name = (policy.get("metadata") or {}).get("name") or "?"
        spec = policy.get("spec") or {}
        expressions = [
            c.get("expression") or ""
            for c in spec.get("matchConditions") or ()
            if c.get("name") == OPERATOR_CONDITION
        ] + [
            v.get("expression") or ""
            for v in spec.get("variables") or ()
            if v.get("name") == OPERATOR_VARIABLE
        ]
        users = {u for e in expressions for u in _EXEMPT.findall(e)}
        if users:
            found[name] = users
    return found


def check_exempt(me: str, exempt: Mapping[str, set[str]]) -> None:
    """Raises IdentityMismatch naming both identities unless every policy exempts `me` (pure)."""
    if not exempt:
        raise IdentityMismatch(
            "no Conveyor admission policy is installed (deploy/30-admission.yaml, labelled "
            f"{PART_OF}): without them anyone who can patch an Approval could approve a deploy; "
            "install them first"
        )
    wrong = {name: users for name, users in exempt.items() if users != {me}}
    if wrong:
        named = "; ".join(f"{n} exempts {', '.join(sorted(u))}" for n, u in sorted(wrong.items()))
        raise IdentityMismatch(
            f"this operator runs as {me}, but the admission policies exempt another identity "
            f"({named}): every gated run would be refused. Run the operator as that identity, "
            f"or replace it with {me} in deploy/30-admission.yaml"
        )


def whoami(api: client.ApiClient) -> str:
    """The username the API server authenticates these credentials as (what admission sees);
    ValueError if it does not say."""
    review = client.AuthenticationV1Api(api).create_self_subject_review(
        client.V1SelfSubjectReview(api_version="authentication.k8s.io/v1", kind="SelfSubjectReview")
    )
    user = review.status.user_info if review.status else None
    if user is None or not user.username:
        raise ValueError("the API server did not say who you are (SelfSubjectReview)")
    return str(user.username)


def installed_policies(api: client.ApiClient) -> list[dict[str, Any]]:
    custom = client.CustomObjectsApi(api)
    found: list[dict[str, Any]] = []
    for plural in ("validatingadmissionpolicies", "mutatingadmissionpolicies"):
        try:
            listed = custom.list_cluster_custom_object(
                POLICY_GROUP, POLICY_VERSION, plural, label_selector=PART_OF
            )
        except ApiException as e:
            if e.status == 404:  # this kind is not served: no such policies
                continue
            raise
        found.extend(listed.get("items") or [])
    return found


def verify_identity(api: client.ApiClient) -> str:
    """The operator's username, once it is known to be the one the policies exempt."""
    me = whoami(api)
    check_exempt(me, exempted(installed_policies(api)))
    return me
