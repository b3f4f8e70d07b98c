# syntax=docker/dockerfile:1
# The ob-stop-operator controller image: `obstop run` as the numeric non-root user 65532.
#   docker build -t ob-stop-operator:0.1.0 .
# The base is pinned by tag; for reproducible builds also pin its digest, e.g.
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm   (then PYTHON_IMAGE=python:...@sha256:...)
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- builder: build the wheel, install it and its pinned dependencies into a venv --------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel is built from (see .dockerignore): the product, without the test kit (operator/obstop/testing),
# so `obstop sim` and `obstop sandbox` say in one line that they need the `testing` extra.
COPY pyproject.toml README.md ./
COPY operator ./operator
# Byte-compile in the build: the root filesystem is read-only at run time.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-compile /wheels/*.whl \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# ---- final: the interpreter of the base image and the venv, nothing else ----------------------------------
FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ob-stop-operator" \
      org.opencontainers.image.description="Kubernetes operator that stops OceanBase clusters, zones or servers through the obshell agent" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# A passwd/group entry for 65532, so tools that look the user up (getpass) work; no home directory.
RUN groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin nonroot
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# /healthz and /metrics (OBSTOP_HEALTH_PORT).
EXPOSE 8080
# Numeric, so Kubernetes can verify runAsNonRoot (the chart sets runAsUser 65532 too).
USER 65532:65532
ENTRYPOINT ["obstop"]
CMD ["run"]
