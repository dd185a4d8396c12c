# syntax=docker/dockerfile:1
# The operator image: `docker build -t incident-commander:dev .` (see README, "Container image
# and kind"). There is no Docker engine on this project's development and CI machines: there,
# this file is linted with hadolint (tests/unit/test_chart_files.py), not built.

# Build stage: a virtualenv holding the package and its runtime dependencies only (no test extra).
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip==24.3.1 \
 && /opt/venv/bin/pip install . \
 && /opt/venv/bin/pip uninstall --yes pip

# Runtime stage: the same slim base, the virtualenv, nothing else; a fixed non-root uid that the
# chart's securityContext (runAsUser 65532, read-only root filesystem) matches.
FROM python:3.11.11-slim-bookworm
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="incident-commander" \
      org.opencontainers.image.description="Kubernetes operator: AWS plumbing, spending brakes and credentials for incident response" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/incident-commander/incident-commander"
RUN groupadd --system --gid 65532 operator \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin operator
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
# 8080 kopf liveness (/healthz), 8443 the API (/readyz), 9090 Prometheus /metrics.
EXPOSE 8080 8443 9090
ENTRYPOINT ["incident-commander", "run"]
