# syntax=docker/dockerfile:1
# dev-agent: `docker compose up -d`, then `docker exec -it dev-agent agent-tui` (see docs/CONTAINER.md).
# Three stages so that a source change rebuilds only a small layer: `deps` (keyed on pyproject.toml alone),
# `wheel` (builds the project), and the runtime image, which copies the deps venv and installs the wheel.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------- deps
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Only pyproject.toml and the script that reads it: editing the source never invalidates this layer.
COPY pyproject.toml docker/pyproject-deps.py ./
# The pip cache mount speeds up rebuilds after a dependency change without ending up in the image.
# .pyc files use unchecked hashes: they stay valid whatever mtimes the layer copy gives the sources, and
# the venv is root-owned, so Python could not rewrite stale ones and would recompile on every start (~1 s).
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/venv \
 && python pyproject-deps.py pyproject.toml > requirements.txt \
 && /opt/venv/bin/pip install --no-compile -r requirements.txt \
 && /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv/lib

# --------------------------------------------------------------------------------------------- wheel
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml docker/pyproject-deps.py ./
# The build backend (hatchling) lives in this throw-away stage only, never in the runtime venv.
RUN --mount=type=cache,target=/root/.cache/pip \
    python pyproject-deps.py --build-system pyproject.toml > build-requirements.txt \
 && python -m pip install -r build-requirements.txt
# README.md is the package's `readme`: hatchling refuses to build without it.
COPY README.md ./
COPY core ./core
COPY tools ./tools
COPY tui ./tui
COPY policies ./policies
RUN python -m pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

# ------------------------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
# Build with the operator's ids (`--build-arg UID=$(id -u)`) so files written to the bind-mounted
# workspace keep the operator's ownership on the host.
ARG UID=1000
ARG GID=1000

LABEL org.opencontainers.image.title="dev-agent" \
      org.opencontainers.image.description="Terminal coding assistant for local models (LM Studio): agent-tui and agent" \
      org.opencontainers.image.licenses="MIT"

# tini is PID 1: it reaps the zombies that commands started through `docker exec` leave behind and
# forwards SIGTERM, so `docker stop` is immediate. git: the agent's git tools and checkpoints.
# Versions are not pinned: the Debian archive drops superseded versions, so a pin breaks the build
# within weeks; the base image tag (PYTHON_IMAGE) fixes the Debian release, which fixes these packages.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini git ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# /bin/sh is dash in the Debian-based python images, so $UID here is the build argument (bash would
# ignore it: UID is read-only there). A GID that already exists (GID 20 on macOS hosts) is reused.
# safe.directory: the bind mount may be owned by another id than ours (Docker Desktop), and git would
# refuse to work in it; /workspace is the operator's own project, the only repository we operate on.
RUN if ! getent group "${GID}" >/dev/null; then groupadd --gid "${GID}" agent; fi \
 && useradd --no-log-init --uid "${UID}" --gid "${GID}" --create-home --shell /bin/bash agent \
 && mkdir -p /workspace /state /tools/bin /opt/dev-agent \
 && chown "${UID}:${GID}" /workspace /state /tools /tools/bin \
 && git config --system --add safe.directory /workspace

COPY --from=deps /opt/venv /opt/venv
COPY docker/tcp-forward.py /opt/dev-agent/tcp-forward.py
# The project itself: a small layer of its own (no editable install; dependencies are already there).
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    /opt/venv/bin/pip install --no-deps --no-compile --disable-pip-version-check /wheels/*.whl \
 && site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
 && /opt/venv/bin/python -m compileall -q --invalidation-mode unchecked-hash "$site/core" "$site/tools" "$site/tui"

# SPEC section 3 with the container's paths. /tools/bin comes last on PATH: it is writable by the agent,
# so nothing installed there may shadow python, git or agent itself.
# TERM/COLORTERM: the image's values win over the TERM=xterm that `docker exec -t` adds (the daemon only
# fills in TERM when the container does not set it), so Textual paints 256/true colours, not 16.
# ESCDELAY: Textual waits this many ms after Escape for a sequence; 100 by default feels laggy.
# OPENAI_API_KEY is not a secret here: LM Studio ignores the token and 'lm-studio' is its documented
# placeholder; a real key for another endpoint belongs in the compose .env, never in the image.
# hadolint ignore=DL3064
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/tools/bin \
    LANG=C.UTF-8 \
    OPENAI_BASE_URL=http://host.docker.internal:1234/v1 \
    OPENAI_API_KEY=lm-studio \
    AGENT_WORKSPACE=/workspace \
    AGENT_STATE_DIR=/state \
    AGENT_TOOLS_DIR=/tools \
    ALLOW_NET=false \
    AGENT_APPROVAL=ask \
    TERM=xterm-256color \
    COLORTERM=truecolor \
    ESCDELAY=25

# Numeric, so that runtimes checking for a non-root user (runAsNonRoot) can tell without /etc/passwd.
USER ${UID}:${GID}
WORKDIR /workspace

# Cheap on purpose: workspace, state dir and policies only, never the model endpoint, so the container
# stays healthy while LM Studio is closed (`agent doctor` without --quick checks the endpoint too).
HEALTHCHECK --interval=30s --timeout=10s --start-period=15s --retries=3 \
    CMD ["agent", "doctor", "--quick"]

ENTRYPOINT ["/usr/bin/tini", "--"]
# The warm server: it imports the app and the SDK once, then each `docker exec -it dev-agent agent-tui` starts
# from it in a fraction of a cold start (README "Warm start"). If it cannot serve it says why and idles, so the
# container stays up and agent-tui starts cold.
CMD ["agent-tui", "--warm-server"]
