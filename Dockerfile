# syntax=docker/dockerfile:1
# The operator image. With Docker: `docker build -t incident-commander:dev .`. Without Docker
# (this project's machines): `make image` builds it with buildah on a Python base made by
# debootstrap from Debian's mirror (hack/image/build.sh), passed in as BASE_IMAGE.

# The base of both stages: any Debian-based image with Python 3.11 as `python` and `python -m venv`
# (requirements.lock is resolved for CPython 3.11). The default is the official slim image.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm

# Build stage: a virtualenv holding the package and its runtime dependencies only (no test extra),
# installed from requirements.lock: exact versions, every file checked against its hash.
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
COPY operator ./operator
# pip's configuration may come in as build secrets, for machines that reach the package index
# through a mirror or a TLS-inspecting proxy: `--secret id=pip.conf,src=FILE` (mounted as
# /etc/pip.conf) and `--secret id=ca-bundle,src=FILE` (/run/secrets/ca-bundle), as
# hack/image/build.sh does. Secrets are mounted for this step only: nothing of them is kept.
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    --mount=type=secret,id=ca-bundle \
    python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r requirements.lock \
 && /opt/venv/bin/pip install --no-deps --no-build-isolation . \
 && /opt/venv/bin/pip uninstall --yes pip setuptools wheel

# Runtime stage: the same base, the virtualenv, nothing else; a fixed non-root uid that the
# chart's securityContext (runAsUser 65532, read-only root filesystem) matches. The account is
# named incident-commander: Debian's base-passwd already has a group called `operator` (gid 37).
FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="incident-commander" \
      org.opencontainers.image.description="Kubernetes operator: AWS plumbing, spending brakes and credentials for incident response" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/incident-commander/incident-commander"
RUN groupadd --system --gid 65532 incident-commander \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin incident-commander
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
# 8080 kopf liveness (/healthz), 8443 the API (/readyz), 9090 Prometheus /metrics.
EXPOSE 8080 8443 9090
ENTRYPOINT ["incident-commander", "run"]
