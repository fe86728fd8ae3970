# Conveyor operator image. Built in two stages so no build tool stays in the final image.
# Python 3.11 (pyproject's floor): hack/images/python.sh stands in for python:3.11-slim locally.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# A virtual environment gives one layout on every Python base (Debian's own python3 would put a
# --prefix install under <prefix>/local). Behind a TLS-intercepting proxy, give pip the CA bundle
# as a build secret (`--secret id=pip-cert,src=FILE`): used for the build, not kept in the image.
RUN --mount=type=secret,id=pip-cert \
    python -m venv /opt/conveyor \
 && if [ -s /run/secrets/pip-cert ]; then export PIP_CERT=/run/secrets/pip-cert; fi \
 && /opt/conveyor/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN groupadd --system --gid 10001 conveyor \
 && useradd --system --uid 10001 --gid conveyor --home-dir /home/conveyor --create-home conveyor \
 && apt-get update \
 && apt-get install -y --no-install-recommends git=1:2.* \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/conveyor /opt/conveyor
USER 10001:10001
ENV PYTHONUNBUFFERED=1 PATH=/opt/conveyor/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["conveyor"]
CMD ["operator", "--all-namespaces"]
