"""The container of a `scan` job: Trivy (its GitLab container scanning report, kept as an
artifact) or the Clair client, scanning an image the run built or names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor.api.pipeline import PipelineJob, PipelineSpec, Scan
from conveyor.engine.variables.expand import Variables, k8s_escape
from conveyor.kube.builds import registry_auth
from conveyor.kube.clair import clair_scan_container
from conveyor.kube.defaults import SCRIPT_CONTAINER
from conveyor.kube.options import JobOptions

SCANNER_USER = 65532  # Trivy needs no root: it reads the image from the registry


def scan_target(
    pipeline: PipelineSpec, job: PipelineJob, variables: Variables, built: Mapping[str, str]
) -> str:
    """The image a scan job scans: its own, or what its build job pushed in this run, by
    digest when the build reported one."""
    assert job.scan is not None
    if job.scan.image is not None:
        return variables.expand_raw(job.scan.image)
    build = pipeline.job(job.scan.build or "")
    if build is None or build.build is None:
        raise ValueError(f"job {job.name} scans {job.scan.build!r}, which is not a build job")
    image = build.build.image
    digest = built.get(image)
    return f"{image}@{digest}" if digest else image


# Trivy scans once, every severity, into its JSON; the findings (one per line, the job's
# severities) and GitLab's container scanning report (every severity) are rendered from it
# with `trivy convert`. The count per severity is the termination message, which the operator
# records in the job's status. Exit 1: findings; 2: the scan could not run (the termination
# message then says why, from Trivy's error).
SCAN_TEMPLATE = (
    "{{ range . }}{{ $target := .Target }}{{ range .Vulnerabilities }}{{ .Severity }} "
    "{{ .VulnerabilityID }} {{ .PkgName }} {{ .InstalledVersion }}"
    "{{ if .FixedVersion }} (fixed in {{ .FixedVersion }}){{ end }} in {{ $target }}"
    '{{ "\\n" }}{{ end }}{{ end }}'
)
SCAN_REPORT = "gl-container-scanning-report.json"  # GitLab's name, in CI_PROJECT_DIR
GITLAB_TEMPLATE = "@/contrib/gitlab.tpl"  # shipped in Trivy's image (and hack/images/trivy.sh)
SCAN_SCRIPT = r"""set -u
cannot_run() {
  reason=$(grep -m1 -E 'FATAL|ERROR' /tmp/trivy.err | sed -E 's/^.*(FATAL|ERROR)[[:space:]]+//' \
    | cut -c1-220)  # the operator keeps 256 characters of a termination message
  printf 'the scanner could not run: %s' "${reason:-trivy $1 failed}" > /dev/termination-log
  echo "the scan of $CONVEYOR_SCAN_IMAGE could not run" >&2
  exit 2
}
# trivy: Trivy's log (not --quiet, which silences its errors too) goes to the job's log.
trivy() {
  rc=0
  command trivy "$@" 2>/tmp/trivy.err || rc=$?
  cat /tmp/trivy.err >&2
  [ "$rc" -eq 0 ] || cannot_run "$1"
}
trivy image --no-progress --scanners vuln --format json --output /tmp/scan.json \
  "$@" "$CONVEYOR_SCAN_IMAGE"
trivy convert --severity "$CONVEYOR_SCAN_SEVERITIES" --format template \
  --template "$CONVEYOR_SCAN_TEMPLATE" --output /tmp/findings /tmp/scan.json
mkdir -p "$(dirname "$CONVEYOR_SCAN_REPORT")"
trivy convert --format template --template "$CONVEYOR_SCAN_REPORT_TEMPLATE" \
  --output "$CONVEYOR_SCAN_REPORT" /tmp/scan.json
cat /tmp/findings
echo "GitLab container scanning report, $CONVEYOR_SCAN_REPORT:"
cat "$CONVEYOR_SCAN_REPORT"
echo
summary=$(cut -d' ' -f1 /tmp/findings | sort | uniq -c \
  | awk '{ printf "%s%s=%s", sep, $2, $1; sep = " " }')
# The report is kept as the job's artifact when the operator has a store (the transfer binary,
# added by build_job); it is printed whole in the log either way.
if [ -n "${CONVEYOR_TRANSFER:-}" ]; then
  "$CONVEYOR_TRANSFER" upload "$([ -n "$summary" ] && echo failed || echo success)" || exit 1
fi
printf '%s' "${summary:-none}" > /dev/termination-log
if [ -n "$summary" ]; then
  echo "$CONVEYOR_SCAN_IMAGE: $summary" >&2
  exit 1
fi
echo "$CONVEYOR_SCAN_IMAGE: no $CONVEYOR_SCAN_SEVERITIES vulnerabilities"
"""


def scan_container(
    scan: Scan,
    image: str,
    env: list[dict[str, Any]],
    project_dir: str,
    volumes: list[dict[str, Any]],
    workspace_mount: dict[str, Any],
    options: JobOptions,
) -> dict[str, Any]:
    """The job's container for a `scan` job: Trivy, as a plain user, nothing privileged,
    downloading nothing but the image and its databases."""
    own = {
        "CONVEYOR_SCAN_IMAGE": image,
        "CONVEYOR_SCAN_SEVERITIES": ",".join(scan.severities),
        "CONVEYOR_SCAN_TEMPLATE": SCAN_TEMPLATE,
        "CONVEYOR_SCAN_REPORT": f"{project_dir}/{SCAN_REPORT}",
        "CONVEYOR_SCAN_REPORT_TEMPLATE": GITLAB_TEMPLATE,
        "TRIVY_CACHE_DIR": "/tmp/trivy-cache",
        # No notices, no usage data sent to Aqua: nothing but registry reads.
        "TRIVY_SKIP_VERSION_CHECK": "true",
        "TRIVY_DISABLE_TELEMETRY": "true",
        "HOME": "/tmp",
    }
    names = {e["name"] for e in env}
    # The platform's databases, unless the job names its own (as GitLab's scanning variables).
    defaults = {
        k: v
        for k, v in (
            ("TRIVY_DB_REPOSITORY", options.scanner_db_repository),
            ("TRIVY_JAVA_DB_REPOSITORY", options.scanner_java_db_repository),
        )
        if v and k not in names
    }
    mounts: list[dict[str, Any]] = [workspace_mount]
    if scan.registry_secret:
        own["DOCKER_CONFIG"] = registry_auth(
            scan.registry_secret, volumes, mounts, "/conveyor/registry-auth"
        )
    return {
        "name": SCRIPT_CONTAINER,
        "image": options.scanner_image,
        "command": ["/bin/sh", "-c", SCAN_SCRIPT, "scan"],
        "args": ["--ignore-unfixed"] if scan.ignore_unfixed else [],
        "workingDir": "/tmp",
        "env": [e for e in env if e["name"] not in own]
        + [{"name": k, "value": k8s_escape(v)} for k, v in {**defaults, **own}.items()],
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SCANNER_USER,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def clair_container(
    scan: Scan,
    image: str,
    env: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    options: JobOptions,
) -> dict[str, Any]:
    """A Clair scan (kube/clair.py), with the registry's credentials as a Trivy scan gets them."""
    mounts: list[dict[str, Any]] = []
    docker_config = (
        registry_auth(scan.registry_secret, volumes, mounts, "/conveyor/registry-auth")
        if scan.registry_secret
        else None
    )
    return clair_scan_container(
        scan,
        image,
        env,
        scanner_image=options.clair_scanner_image,
        clair_url=options.clair_url,
        docker_config=docker_config,
        mounts=mounts,
    )
