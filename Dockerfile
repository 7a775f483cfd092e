# kube-guardrails operator image.
#
# Two stages: the builder installs the package and its dependencies into a virtualenv;
# the final image holds only that virtualenv on the same slim Python base (so the venv's
# interpreter path stays valid), runs as a numeric non-root user (Pod Security "restricted"
# can verify runAsNonRoot only with a numeric UID) and needs no writable path but /tmp:
# no bytecode is written at run time and HOME points at /tmp, which the Deployment mounts
# as an emptyDir under a read-only root filesystem.
#
# Build: docker build -t ghcr.io/kube-guardrails/kube-guardrails:0.1.0 .

FROM python:3.11-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# Installs the exact dependency set of pyproject.toml; bytecode is compiled now, at build
# time, because the running container cannot write it.
RUN pip install --no-cache-dir . \
    && python -m compileall -q /opt/venv

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="kube-guardrails" \
      org.opencontainers.image.description="Kubernetes operator: namespace hardening and workload guardrails" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
COPY --from=builder /opt/venv /opt/venv
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["kube-guardrails", "run"]
