# alpine/git:2.47.2 (the operator's --checkout-image default) and alpine/git:latest.
# Debian bookworm minbase with git, ca-certificates and openssh-client. Differs: git 2.39 and
# Debian instead of Alpine; the entrypoint is `git` as upstream's, but the checkout container
# gives its own command (/bin/sh -c ...), which works the same.
NAMES=(alpine/git:2.47.2 alpine/git:latest)
INPUTS=()
CONFIG=(--config.entrypoint git --config.workingdir /git --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
build_rootfs() { debootstrap_into "$1" "git,ca-certificates,openssh-client"; mkdir -p "$1/git"; }
