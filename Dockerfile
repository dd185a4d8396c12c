# syntax=docker/dockerfile:1
# Multi-stage build of the operator image. There is no Docker engine on the
# development machines of this project: this file is linted, not built, there.

FROM python:3.11.7-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --upgrade pip==24.3.1 \
 && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11.7-slim-bookworm
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="incident-commander" \
      org.opencontainers.image.description="Kubernetes operator: AWS plumbing, spending brakes and credentials for incident response" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/incident-commander/incident-commander"
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 8080 8443 9090
ENTRYPOINT ["incident-commander", "run"]
