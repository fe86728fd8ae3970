# conveyor-test/nonroot-shell:1, for the tests of what a job image that does not run as root can
# do in its project directory (GitLab's umask 0000): shell-only.sh's image, run as its user ci
# (1000).
# shellcheck source=shell-only.sh
. "$HERE/shell-only.sh"
NAMES=(conveyor-test/nonroot-shell:1)
CONFIG+=(--config.user 1000:1000)
INPUTS+=("$(sha256sum <"$HERE/shell-only.sh")")  # its rootfs is shell-only.sh's
