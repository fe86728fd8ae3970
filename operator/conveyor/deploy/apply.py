"""Reconciling rendered manifests into a target cluster: server-side apply, prune, rollout
wait, rollback. The I/O shell around the pure parts (render, rollout, records).

Every function takes `api`: an ApiClient from target.target_client, or a DynamicClient made
once from it with cluster.dynamic(api) (discovery is then done once for several calls).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.resource import Resource

from conveyor.deploy.cluster import Api, dynamic, is_not_found, resource, translated
from conveyor.deploy.errors import DeployError, TargetUnavailable
from conveyor.deploy.records import DeployRecord, ObjectKey, group_of, identity
from conveyor.deploy.rollout import Verdict, needs_rollout, rollout_state

log = logging.getLogger(__name__)

FIELD_MANAGER = "conveyor"
# Apply order for the kinds others depend on (Helm's install order, shortened): a Deployment
# applied before its ServiceAccount makes pods that fail until the account exists. Other kinds
# come after these, in template order (the sort is stable).
_ORDER = {
    ("", "Namespace"): 0,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): 1,
    ("", "ServiceAccount"): 2,
    ("", "Secret"): 3,
    ("", "ConfigMap"): 3,
    ("", "PersistentVolumeClaim"): 4,
    ("rbac.authorization.k8s.io", "ClusterRole"): 5,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): 6,
    ("rbac.authorization.k8s.io", "Role"): 5,
    ("rbac.authorization.k8s.io", "RoleBinding"): 6,
    ("", "Service"): 7,
}
_OTHERS = 8
# Never pruned: deleting a Namespace deletes everything in it, deleting a CRD every object of
# its kind. Removing them from the templates must not do that; a person does it on purpose.
PROTECTED_KINDS = frozenset(
    {("", "Namespace"), ("apiextensions.k8s.io", "CustomResourceDefinition")}
)


@dataclass(frozen=True)
class AppliedObject:
    """One object as the target stored it after our apply."""

    api_version: str
    kind: str
    namespace: str | None  # None: cluster-scoped
    name: str
    generation: int | None
    uid: str
    # What we sent (namespace and labels added); for inspection, not part of equality.
    manifest: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def key(self) -> ObjectKey:
        return (self.api_version, self.kind, self.namespace, self.name)

    def describe(self) -> str:
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.kind} {self.name}{where}"


@dataclass(frozen=True)
class ApplyResult:
    objects: list[AppliedObject]
    manifests: list[dict[str, Any]]  # the rendered input, unchanged: what rollback re-applies
    created_namespace: str | None = None  # the target namespace, when apply had to create it
    pruned: list[ObjectKey] = field(default_factory=list)  # rollback only

    def record(self) -> DeployRecord:
        """What to store for the next deploy's prune and for a rollback to this one."""
        return DeployRecord(
            manifests=copy.deepcopy(self.manifests), objects=[o.key for o in self.objects]
        )


@dataclass(frozen=True)
class ObjectRollout:
    object: AppliedObject
    state: str  # ready | progressing | failed
    reason: str
    message: str


@dataclass(frozen=True)
class RolloutResult:
    ok: bool
    reason: str  # Available | ProgressDeadlineExceeded | Timeout | Deleted
    message: str  # says which object and why, e.g. "Deployment go-app in namespace x: ..."
    failed: AppliedObject | None = None
    objects: list[ObjectRollout] = field(default_factory=list)


def apply(
    api: Api,
    namespace: str,
    manifests: Sequence[Mapping[str, Any]],
    *,
    labels: Mapping[str, str],
    field_manager: str = FIELD_MANAGER,
    allowed_namespaces: Collection[str] | None = None,
    dry_run_first: bool = True,
) -> ApplyResult:
    """Server-side apply (force, `field_manager`) every manifest, adding `labels` to each.
    Namespaced objects without a namespace go to `namespace`; an explicit namespace is kept
    (only those in `allowed_namespaces` when given); cluster-scoped objects stay so.
    Checked before anything changes: every kind is served, every namespace exists (the target
    `namespace` is created when missing, others are an error), and with `dry_run_first` the
    server accepts every object (a server-side dry run), so a bad manifest does not leave half a
    deploy behind. Raises DeployError, TargetUnavailable."""
    dyn = dynamic(api)
    planned = [_plan(dyn, namespace, m, labels, allowed_namespaces) for m in manifests]
    planned.sort(key=lambda p: _ORDER.get((p.resource.group, p.resource.kind), _OTHERS))
    created = _ensure_namespaces(dyn, namespace, planned)
    if dry_run_first:
        for p in planned:
            _apply_one(dyn, p, field_manager, dry_run=True)
    objects = [_apply_one(dyn, p, field_manager, dry_run=False) for p in planned]
    return ApplyResult(
        objects=objects,
        manifests=[copy.deepcopy(dict(m)) for m in manifests],
        created_namespace=created,
    )


def prune(
    api: Api,
    namespace: str,
    labels_selector: str,
    keep: Iterable[ObjectKey],
    kinds: Iterable[tuple[str, str]],
    *,
    namespaces: Iterable[str] = (),
) -> list[ObjectKey]:
    """Delete the objects matching `labels_selector` that are not in `keep`, among `kinds`
    ((apiVersion, kind): pass the kinds applied now and those of the previous record). Looks in
    `namespace`, the namespaces of `keep`, and `namespaces` (pass the previous record's); never
    lists across all namespaces, which a namespaced deployer Role could not. Identity ignores
    the API version. Namespaces and CRDs are never pruned. Returns what was deleted."""
    if not labels_selector.strip():
        raise ValueError("prune needs a label selector: an empty one would match everything")
    dyn = dynamic(api)
    keep_ids = {identity(k) for k in keep}
    where = {namespace, *namespaces} | {k[2] for k in keep if k[2]}
    deleted: list[ObjectKey] = []
    seen: set[tuple[str, str]] = set()
    for api_version, kind in sorted(set(kinds)):
        group = group_of(api_version)
        if (group, kind) in PROTECTED_KINDS or (group, kind) in seen:
            continue  # one version of a kind lists the same objects as another
        seen.add((group, kind))
        try:
            res = resource(dyn, api_version, kind)
        except DeployError:
            continue  # the target does not serve it: nothing of that kind can be left over
        for ns in sorted(where) if res.namespaced else [None]:
            for item in _list(dyn, res, ns, labels_selector):
                meta = item.get("metadata") or {}
                key: ObjectKey = (api_version, kind, meta.get("namespace"), meta["name"])
                if identity(key) in keep_ids:
                    continue
                _delete(dyn, res, key)
                deleted.append(key)
    return deleted


def wait_rollout(
    api: Api,
    applied: Iterable[AppliedObject],
    *,
    timeout_seconds: float,
    first_delay: float = 0.5,
    max_delay: float = 5.0,
) -> RolloutResult:
    """Wait until every Deployment, StatefulSet and DaemonSet of `applied` has rolled out
    (see rollout.rollout_state); other kinds need nothing. Polls with exponential backoff.
    Fails early when a Deployment exceeds its progressDeadlineSeconds, and at `timeout_seconds`
    otherwise. Raises TargetUnavailable only when the target was unreachable at the deadline."""
    dyn = dynamic(api)
    pending = [o for o in applied if needs_rollout(o.api_version, o.kind)]
    done: list[ObjectRollout] = []
    last: dict[ObjectKey, Verdict] = {}
    deadline = time.monotonic() + timeout_seconds
    delay = first_delay
    while True:
        unreachable: TargetUnavailable | None = None
        for obj in list(pending):
            try:
                verdict = _observe(dyn, obj)
            except TargetUnavailable as e:
                unreachable = e  # a blip: keep waiting until the deadline
                break
            last[obj.key] = verdict
            if verdict.state == "failed":
                return RolloutResult(
                    ok=False,
                    reason=verdict.reason,
                    message=f"{obj.describe()}: {verdict.message}",
                    failed=obj,
                    objects=[*done, _rollout(obj, verdict), *_pending(pending, last, obj)],
                )
            if verdict.state == "ready":
                pending.remove(obj)
                done.append(_rollout(obj, verdict))
        if not pending:
            return RolloutResult(ok=True, reason="Available", message="rolled out", objects=done)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if unreachable is not None:
                raise unreachable
            first = pending[0]
            why = last[first.key].message if first.key in last else "not observed"
            return RolloutResult(
                ok=False,
                reason="Timeout",
                message=f"{first.describe()}: not rolled out after {timeout_seconds:g}s: {why}",
                failed=first,
                objects=[*done, *_pending(pending, last)],
            )
        # Polling a remote cluster with backoff: no watch connection to keep per deploy.
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, max_delay)


def rollback(
    api: Api,
    namespace: str,
    previous: DeployRecord,
    *,
    labels: Mapping[str, str],
    labels_selector: str | None = None,
    failed_kinds: Iterable[tuple[str, str]] = (),
    field_manager: str = FIELD_MANAGER,
    allowed_namespaces: Collection[str] | None = None,
) -> ApplyResult:
    """Re-apply `previous` (the record of the last good deployment). Server-side apply with the
    same field manager also removes the fields the failed revision added. With
    `labels_selector`, also prune what the failed revision added (pass its kinds as
    `failed_kinds`); the result's `pruned` lists it. Then wait_rollout on the result."""
    result = apply(
        api,
        namespace,
        previous.manifests,
        labels=labels,
        field_manager=field_manager,
        allowed_namespaces=allowed_namespaces,
    )
    if labels_selector is None:
        return result
    pruned = prune(
        api,
        namespace,
        labels_selector,
        {o.key for o in result.objects},
        {*previous.kinds, *failed_kinds},
        namespaces=previous.namespaces,
    )
    return ApplyResult(
        objects=result.objects,
        manifests=result.manifests,
        created_namespace=result.created_namespace,
        pruned=pruned,
    )


# --- internals -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Planned:
    resource: Resource
    body: dict[str, Any]
    namespace: str | None

    def describe(self) -> str:
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.body['kind']} {self.body['metadata']['name']}{where}"


def _plan(
    dyn: DynamicClient,
    namespace: str,
    manifest: Mapping[str, Any],
    labels: Mapping[str, str],
    allowed: Collection[str] | None,
) -> _Planned:
    body = copy.deepcopy(dict(manifest))
    meta = body.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name") or not body.get("kind"):
        raise DeployError("a manifest has no kind or metadata.name")
    res = resource(dyn, str(body.get("apiVersion", "")), str(body["kind"]))
    # Our labels win over the template's: prune finds our objects by them.
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    for server_owned in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        meta.pop(server_owned, None)
    target_ns: str | None = None
    if res.namespaced:
        target_ns = meta.get("namespace") or namespace
        if allowed is not None and target_ns not in allowed:
            raise DeployError(
                f"{body['kind']} {meta['name']}: namespace {target_ns} is not allowed for this "
                f"environment (allowed: {', '.join(sorted(allowed))})"
            )
        meta["namespace"] = target_ns
    else:
        meta.pop("namespace", None)
    return _Planned(res, body, target_ns)


def _ensure_namespaces(dyn: DynamicClient, namespace: str, planned: list[_Planned]) -> str | None:
    """Create the target namespace if missing; other missing namespaces are errors (we do not
    invent namespaces a template merely names). All are checked before anything is created."""
    declared = {p.body["metadata"]["name"] for p in planned if p.resource.kind == "Namespace"}
    wanted = {p.namespace for p in planned if p.namespace} - declared
    if not wanted:
        return None
    namespaces = resource(dyn, "v1", "Namespace")
    missing = [ns for ns in sorted(wanted) if not _namespace_exists(dyn, namespaces, ns)]
    for ns in missing:
        if ns != namespace:
            users = sorted(p.describe() for p in planned if p.namespace == ns)
            raise DeployError(
                f"namespace {ns} does not exist on the target cluster (needed by "
                f"{', '.join(users)}); only the environment's namespace {namespace} is created"
            )
    if not missing:
        return None
    with translated(f"creating namespace {namespace}"):
        try:
            # Without our labels: no prune may ever select the namespace (and all it holds).
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            dyn.create(namespaces, body=body)
        except ApiException as e:
            if e.status != 409:  # created meanwhile: fine
                raise
    log.info("created namespace %s on the target cluster", namespace)
    return namespace


def _namespace_exists(dyn: DynamicClient, namespaces: Resource, ns: str) -> bool:
    with translated(f"reading namespace {ns}"):
        try:
            dyn.get(namespaces, name=ns)
        except ApiException as e:
            if e.status == 403:
                return True  # a namespaced deployer may not read Namespaces; apply will tell
            if is_not_found(e):
                return False
            raise
    return True


def _apply_one(
    dyn: DynamicClient, p: _Planned, field_manager: str, *, dry_run: bool
) -> AppliedObject:
    doing = f"{'checking' if dry_run else 'applying'} {p.describe()}"
    with translated(doing):
        out = dyn.server_side_apply(
            p.resource,
            body=p.body,
            name=p.body["metadata"]["name"],
            namespace=p.namespace,
            field_manager=field_manager,
            force_conflicts=True,
            dry_run="All" if dry_run else None,
        ).to_dict()
    meta = out.get("metadata") or {}
    return AppliedObject(
        api_version=str(p.body["apiVersion"]),
        kind=str(p.body["kind"]),
        namespace=p.namespace,
        name=str(meta.get("name", p.body["metadata"]["name"])),
        generation=meta.get("generation"),
        uid=str(meta.get("uid", "")),
        manifest=p.body,
    )


def _list(dyn: DynamicClient, res: Resource, ns: str | None, selector: str) -> list[dict[str, Any]]:
    where = f" in namespace {ns}" if ns else ""
    with translated(f"listing {res.kind}{where} for pruning"):
        try:
            return list(
                dyn.get(res, namespace=ns, label_selector=selector).to_dict().get("items") or []
            )
        except ApiException as e:
            if is_not_found(e):
                return []  # the namespace is gone: nothing to prune there
            raise


def _delete(dyn: DynamicClient, res: Resource, key: ObjectKey) -> None:
    _, kind, ns, name = key
    where = f" in namespace {ns}" if ns else ""
    with translated(f"pruning {kind} {name}{where}"):
        try:
            dyn.delete(res, name=name, namespace=ns, propagation_policy="Background")
        except ApiException as e:
            if not is_not_found(e):  # already gone: the outcome we wanted
                raise
    log.info("pruned %s %s%s", kind, name, where)


def _observe(dyn: DynamicClient, obj: AppliedObject) -> Verdict:
    res = resource(dyn, obj.api_version, obj.kind)
    with translated(f"reading {obj.describe()}"):
        try:
            current = dyn.get(res, name=obj.name, namespace=obj.namespace).to_dict()
        except ApiException as e:
            if is_not_found(e):
                return Verdict("failed", "Deleted", "deleted while rolling out")
            raise
    if (current.get("metadata") or {}).get("uid") not in (None, "", obj.uid):
        # Deleted and made again by someone else: the generation we wait for means nothing.
        return rollout_state(current, None)
    return rollout_state(current, obj.generation)


def _rollout(obj: AppliedObject, verdict: Verdict) -> ObjectRollout:
    return ObjectRollout(obj, verdict.state, verdict.reason, verdict.message)


def _pending(
    pending: list[AppliedObject],
    last: Mapping[ObjectKey, Verdict],
    skip: AppliedObject | None = None,
) -> list[ObjectRollout]:
    unknown = Verdict("progressing", "Pending", "not observed")
    return [_rollout(o, last.get(o.key, unknown)) for o in pending if o is not skip]
