# Conveyor operator image. Built in two stages so no build tool stays in the final image.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.12-slim
RUN groupadd --system --gid 10001 conveyor \
 && useradd --system --uid 10001 --gid conveyor --home-dir /home/conveyor --create-home conveyor \
 && apt-get update \
 && apt-get install -y --no-install-recommends git=1:2.* \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /install /usr/local
USER 10001:10001
ENV PYTHONUNBUFFERED=1
ENTRYPOINT ["conveyor"]
CMD ["operator", "--all-namespaces"]
