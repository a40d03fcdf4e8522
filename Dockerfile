# The lensops image: `lensops run`, the daemon (CONTRACT.md sections 4 to 6).
#
#   docker build -t lensops:0.1.0 .
#   docker run --rm --init -p 8080:8080 -e LENSOPS_REPO_URL=https://git.example.com/acme/estate.git lensops:0.1.0
#
# --init: lensops is PID 1 and runs git (and ssh under it); an init process
# (Docker's tini) reaps what they leave behind. On ECS the task definition
# sets initProcessEnabled for the same reason.
#
# Two stages. The builder makes a wheel of lensops and wheels of its
# dependencies; the runtime installs them from that wheelhouse alone, so the
# final image holds no source tree, no build tools and no pip cache.
# Needs BuildKit (the default builder since Docker 23), whose built-in
# Dockerfile frontend has the bind mount of the wheelhouse: no `# syntax=`
# line, so a build pulls no frontend image. Deployment on ECS:
# docs/operations.md.
#
# The base image is pinned by digest: the same bytes on every build, whatever
# the tag points at today (python:3.11-slim-bookworm, Python 3.11.16 on Debian
# 12, as docker-library/repo-info recorded the tag's multi-platform index).
# Move the pin on purpose, for Python or Debian security updates:
#   docker buildx imagetools inspect python:3.11-slim-bookworm   # "Digest: sha256:..."
# and replace the digest below (--build-arg PYTHON_IMAGE=... overrides it once).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:0bee7276f83efd4a1ee05bbbf4281d95ed28e079220a9457f25a93e3f1e3c31b

# --- builder: wheels ---------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# What the wheel is built from, and nothing else: pyproject.toml, the README
# it names as `readme`, and every package of [tool.setuptools.packages.find]
# (tests/test_deploy.py checks that this list keeps up with pyproject.toml).
# No extras: the image holds neither the test tooling of emulator/ nor moto
# (tests/test_packaging.py checks the wheel built from the same files).
COPY pyproject.toml README.md ./
COPY controller/ controller/
COPY reconcilers/ reconcilers/
COPY runbooks/ runbooks/
RUN pip wheel --wheel-dir /wheels .

# --- runtime -----------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="lensops" \
      org.opencontainers.image.description="GitOps controller for AWS: YAML manifests in Git, kept equal to live AWS." \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# git: GitPython runs the git binary to clone and fetch LENSOPS_REPO_URL.
# openssh-client: for git@host:org/repo.git URLs (deploy keys).
# ca-certificates: for https:// Git URLs and the AWS endpoints.
# tzdata: zoneinfo for the `timezone` of sync windows (America/New_York...).
# Unpinned on purpose: the base image fixes the Debian release (bookworm), and
# exact versions would break the build whenever Debian ships a security update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/*

# The daemon runs as uid 10001; it writes only below /var/lib/lensops
# (state.db and the Git cache). On ECS that folder is an EFS access point
# owned by the same uid (deploy/ecs/task-definition.json).
RUN groupadd --system --gid 10001 lensops \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/lensops \
        --no-create-home --shell /usr/sbin/nologin lensops \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/lensops /var/lib/lensops/cache

# Install from the builder's wheelhouse only (--no-index: nothing fetched
# here), then prove that the console script and every package load. The
# wheelhouse built a step earlier is the pin.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels lensops \
 && lensops --version \
 && lensops schema > /dev/null \
 && lensops runbook list > /dev/null

ENV HOME=/var/lib/lensops \
    LENSOPS_STATE_URL=sqlite:////var/lib/lensops/state.db \
    LENSOPS_CACHE_DIR=/var/lib/lensops/cache \
    LENSOPS_HTTP_ADDR=0.0.0.0:8080

WORKDIR /var/lib/lensops
USER 10001:10001
EXPOSE 8080

# /healthz answers 200 while the process loop is alive (CONTRACT.md section 5).
# No curl in the slim image: Python asks, on the port of LENSOPS_HTTP_ADDR.
# An HTTP error or a refused connection raises, and Python exits 1: unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('LENSOPS_HTTP_ADDR', '0.0.0.0:8080').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# SIGTERM (docker stop, ECS) stops new work; the in-flight pass stops at a
# safe point and the process exits 0 within 25 s, inside ECS's stopTimeout 30.
STOPSIGNAL SIGTERM
ENTRYPOINT ["lensops"]
CMD ["run"]
