# python:3.11-slim (and python:3.11, python:3.11-slim-bookworm, python:3.11-bookworm): the base of
# the operator's own image (the project's Dockerfile).
# Debian bookworm minbase with Debian's python3 (3.11), pip, venv and python-is-python3, and the
# host's apt sources and options, so `apt-get install` in a Dockerfile works as on Docker Hub's.
# Differs: Python at /usr/bin (Debian's build, 3.11.2 of bookworm), not built from source into
# /usr/local; pip is Debian's (its EXTERNALLY-MANAGED marker is removed, so `pip install` works
# as in the official image); `pip install --prefix` uses Debian's <prefix>/local layout, so
# install into a virtual environment (the Dockerfile does) to be layout-independent.
NAMES=(python:3.11-slim python:3.11 python:3.11-slim-bookworm python:3.11-bookworm)
INPUTS=()
CONFIG=(--config.cmd python3 --config.env LANG=C.UTF-8
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
build_rootfs() {
  debootstrap_into "$1" "python3,python3-pip,python3-venv,python-is-python3,ca-certificates"
  rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED
}
