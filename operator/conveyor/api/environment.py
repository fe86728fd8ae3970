"""The Environment resource: a deploy target owned by the platform team.

`spec` says where deploys go (a kubeconfig Secret and context, a namespace), what they get
(url, variables) and who must approve them (`protection`); `status` is the operator's small record
of the last deployment.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.api.codec import from_dict
from conveyor.api.conditions import Condition
from conveyor.api.durations import DURATION_PATTERN, parse_duration
from conveyor.api.fields import Validation, model, spec_field
from conveyor.api.meta import DNS_LABEL_MAX, DNS_SUBDOMAIN_MAX, DNS_SUBDOMAIN_PATTERN, ObjectMeta
from conveyor.api.pipeline import (
    JOB_NAME_MAX,
    VARIABLE_NAME_MAX,
    VARIABLE_NAME_PATTERN,
    VARIABLE_VALUE_MAX,
    VARIABLES_MAX,
)

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# A DNS label, or one made of $CI_ENVIRONMENT_SLUG (once expanded, it must be a DNS label).
TARGET_NAMESPACE_PATTERN = r"^([-a-z0-9]|\$CI_ENVIRONMENT_SLUG|\$\{CI_ENVIRONMENT_SLUG\})+$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
DEFAULT_KUBECONFIG_KEY = "kubeconfig"
DEFAULT_APPROVAL_TIMEOUT = "24h"
MAX_REQUIRED_APPROVALS = 10
MAX_APPROVERS = 50
# Kubernetes usernames are free-form (OIDC subjects, emails, service accounts); bound them anyway.
APPROVER_MAX_LENGTH = 256
GROUP_PREFIX = "group:"
URL_MAX_LENGTH = 2048
# The environment's variables share the pipeline's limits, names included.
ENV_VARIABLES_MAX = min(VARIABLES_MAX, 100)
IMAGE_MAX_LENGTH = 512

APPROVER_RULE = Validation(
    rule="!self.startsWith('group:') || size(self) > 6",
    message="an approver is a username or group:<name>; group: needs a name",
)


@model("The Secret holding the target cluster's kubeconfig.")
@dataclass(frozen=True)
class KubeconfigSecretRef:
    name: str = spec_field(
        "Name of the Secret, in the operator's credentials namespace (conveyor-system by "
        "default), never the team's: only the platform and the operator read it.",
        max_length=DNS_SUBDOMAIN_MAX,
        pattern=DNS_SUBDOMAIN_PATTERN,
    )
    key: str = spec_field(
        "Key of the kubeconfig in the Secret's data.",
        default=DEFAULT_KUBECONFIG_KEY,
        max_length=DNS_SUBDOMAIN_MAX,
        pattern=SECRET_KEY_PATTERN,
    )


def approvers_field(description: str) -> Any:
    """Usernames and group:<name> entries (Environment protection, and the Approval's copy)."""
    return spec_field(
        description,
        default_factory=tuple,
        max_items=MAX_APPROVERS,
        item_max_length=APPROVER_MAX_LENGTH,
        item_min_length=1,
        item_pattern=r"^\S+$",
        list_type="set",
        item_validations=(APPROVER_RULE,),
    )


@model(
    "Who must approve deploys to this environment before they run.",
    validations=(
        Validation(
            rule="self.requiredApprovals == 0 || (has(self.approvers) && size(self.approvers) > 0)",
            message="requiredApprovals > 0 needs at least one approver",
            field_path=".approvers",
        ),
    ),
)
@dataclass(frozen=True)
class Protection:
    required_approvals: int = spec_field(
        "Approvals a deploy needs; 0: the environment is unprotected.",
        default=0,
        minimum=0,
        maximum=MAX_REQUIRED_APPROVALS,
    )
    approvers: tuple[str, ...] = approvers_field(
        "Who may approve: usernames, or group:<name> for members of a group."
    )
    allow_initiator: bool = spec_field(
        "Whether the user who started a run may approve its deploy (GitLab forbids it by default).",
        default=False,
    )
    approval_timeout: str = spec_field(
        "How long a deploy waits for approvals before it expires, e.g. 24h or 90m.",
        default=DEFAULT_APPROVAL_TIMEOUT,
        max_length=32,
        min_length=2,
        pattern=DURATION_PATTERN,
    )

    @property
    def protected(self) -> bool:
        return self.required_approvals > 0

    def timeout_seconds(self) -> int:
        return parse_duration(self.approval_timeout)


@model("Where and how deploys to this environment go.")
@dataclass(frozen=True)
class EnvironmentSpec:
    kubeconfig_secret: KubeconfigSecretRef = spec_field(
        "The Secret with the kubeconfig of the target cluster (one or more contexts)."
    )
    namespace: str = spec_field(
        "Namespace of the target cluster deploys go to; $CI_ENVIRONMENT_SLUG in it is the "
        "deployed environment's slug (one namespace per review app of a family, see names).",
        max_length=DNS_LABEL_MAX,
        pattern=TARGET_NAMESPACE_PATTERN,
    )
    names: tuple[str, ...] = spec_field(
        "GitLab environment names this Environment serves besides its own name (and its "
        "slug), as patterns where * stands for any characters: review/* serves every review "
        "app.",
        default_factory=tuple,
        max_items=20,
        item_max_length=255,
        item_min_length=1,
    )
    context: str | None = spec_field(
        "Context of the kubeconfig to use; default: its current-context.",
        default=None,
        max_length=253,
        min_length=1,
    )
    url: str | None = spec_field(
        "URL of the deployed application (GitLab environment:url).",
        default=None,
        max_length=URL_MAX_LENGTH,
        pattern=r"^https?://\S+$",
    )
    variables: Mapping[str, str] = spec_field(
        "Variables of deploys to this environment, e.g. APP_FQDN.",
        default_factory=dict,
        max_properties=ENV_VARIABLES_MAX,
        item_max_length=VARIABLE_VALUE_MAX,
        validations=(
            Validation(
                rule=(
                    f"self.all(k, size(k) <= {VARIABLE_NAME_MAX} && "
                    f"k.matches('{VARIABLE_NAME_PATTERN}'))"
                ),
                message="variable names must match [A-Za-z_][A-Za-z0-9_]*",
            ),
        ),
    )
    protection: Protection = spec_field(
        "Approval policy; the default leaves the environment unprotected.",
        default_factory=Protection,
    )


@model("The last deployment to this environment.")
@dataclass(frozen=True)
class LastDeployment:
    pipeline_run: str = spec_field("The PipelineRun that deployed.", max_length=DNS_LABEL_MAX)
    job: str = spec_field("The pipeline job that deployed.", max_length=JOB_NAME_MAX)
    environment: str | None = spec_field(
        "The environment name deployed (it differs from the Environment's own name for one "
        "it serves by slug or pattern, e.g. review/feature-x).",
        default=None,
        max_length=255,
    )
    revision: str | None = spec_field(
        "Branch or tag deployed.", default=None, max_length=255, min_length=1
    )
    sha: str | None = spec_field(
        "Commit deployed.", default=None, max_length=40, pattern=r"^[0-9a-f]{40}$"
    )
    image: str | None = spec_field("Image deployed.", default=None, max_length=IMAGE_MAX_LENGTH)
    time: datetime.datetime | None = spec_field("When the deployment finished.", default=None)


@model("Environment status, written by the operator.")
@dataclass(frozen=True)
class EnvironmentStatus:
    last_deployment: LastDeployment | None = spec_field(
        "The last deployment to this environment.", default=None
    )
    conditions: tuple[Condition, ...] = spec_field(
        "Conditions, e.g. Ready (the kubeconfig Secret and context are usable).",
        default_factory=tuple,
        max_items=8,
        list_type="map",
        list_map_keys=("type",),
    )
    observed_generation: int | None = spec_field(
        "Generation of the spec last processed.", default=None, minimum=0
    )


@dataclass(frozen=True)
class Environment:
    metadata: ObjectMeta = spec_field("Object metadata.", default_factory=ObjectMeta)
    spec: EnvironmentSpec | None = spec_field("Desired state.", default=None)
    status: EnvironmentStatus = spec_field("Observed state.", default_factory=EnvironmentStatus)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Environment:
        return from_dict(cls, obj)

    @property
    def name(self) -> str:
        return self.metadata.name


def parse_environment_spec(obj: Mapping[str, Any] | None) -> EnvironmentSpec:
    return from_dict(EnvironmentSpec, obj or {}, "spec")
