# One image for every ganserve process: `api` (the default command), `worker` and `migrate`.
# It needs BuildKit (the default builder since Docker Engine 23; `DOCKER_BUILDKIT=1` on 20.10).
#
#   docker build -t ganserve .                                    # CUDA 13.0 wheels (GPU nodes)
#   docker build -t ganserve:cpu --build-arg TORCH_FLAVOUR=cpu .  # CPU-only wheels, much smaller
#
# TORCH_FLAVOUR names a wheel index under https://download.pytorch.org/whl/ and must be one
# that PyTorch publishes for TORCH_VERSION: for torch 2.13 that is cpu, cu126 (drivers older
# than CUDA 13's, and pre-Turing GPUs) or cu130 (the default; NVIDIA driver R580 or newer).
# TORCH_INDEX_URL replaces that index (a mirror, a proxy, a local one); empty = PyTorch's for
# TORCH_FLAVOUR. The CUDA libraries come inside the wheels; the host needs only the NVIDIA
# driver and the NVIDIA container toolkit.
#
# Behind a proxy or with a private index, two optional build secrets reach every pip step and
# no layer: `--secret id=pip.conf,src=PATH` (a pip configuration: index-url, extra-index-url,
# trusted-host...) and `--secret id=ca-bundle,src=PATH` (PEM certificates pip trusts). The
# proxy itself: `--build-arg HTTPS_PROXY=...` (predefined, kept out of the image's history).
# See docs/deployment.md.

# ---------------------------------------------------------------------------------------
# venv: torch and the dependencies in /opt/venv. It reads nothing but pyproject.toml, so a
# change to the source reuses it whole (and the runtime stage's copy of it, 1.4 GB with CUDA).
FROM python:3.11-slim-bookworm AS venv

ARG TORCH_FLAVOUR=cu130
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

# torch first, from PyTorch's index (or TORCH_INDEX_URL): it is the largest download and the
# one that picks CPU or CUDA. The project's `torch>=2.10` is then already satisfied.
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    --mount=type=secret,id=ca-bundle \
    if [ -f /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && pip install --no-cache-dir \
        --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/${TORCH_FLAVOUR}}" \
        "torch==${TORCH_VERSION}"

# The dependencies, computed from pyproject.toml alone (plus the `postgres` extra for psycopg).
WORKDIR /build
COPY pyproject.toml ./
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    --mount=type=secret,id=ca-bundle \
    if [ -f /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['postgres']))" \
        > requirements.txt \
    && pip install --no-cache-dir -r requirements.txt

# ---------------------------------------------------------------------------------------
# wheel: ganserve itself as a wheel in /dist (a few hundred kB), built apart from the venv.
FROM python:3.11-slim-bookworm AS wheel

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
# pip builds it with the build backend of pyproject.toml, fetched into an isolated
# environment; the venv keeps pip off the base image's own Python.
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    --mount=type=secret,id=ca-bundle \
    if [ -f /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && python -m venv /tmp/pip \
    && /tmp/pip/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

# ---------------------------------------------------------------------------------------
# runtime: the same slim Python, the venv, ganserve installed into it, and an unprivileged
# user owning /data.
FROM python:3.11-slim-bookworm AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GANSERVE_DATA_DIR=/data

# uid/gid 10001: above the range of host users, so files on bind mounts and NFS exports do
# not map to a real account by accident. A named volume mounted at /data inherits this
# ownership from the image the first time it is used.
RUN groupadd --system --gid 10001 ganserve \
    && useradd --system --no-log-init --uid 10001 --gid 10001 \
        --home-dir /home/ganserve --create-home --shell /usr/sbin/nologin ganserve \
    && mkdir -p /data \
    && chown ganserve:ganserve /data

# Two layers: the venv (unchanged by a source-only change, so reused from the cache and, on
# a host that has the previous image, not shipped again), then ganserve from its wheel: the
# only layer a source-only change makes new, a few MB. The wheel is mounted, not copied.
COPY --from=venv /opt/venv /opt/venv
RUN --mount=type=bind,from=wheel,source=/dist,target=/tmp/dist \
    pip install --no-cache-dir --no-deps --no-index /tmp/dist/ganserve-*.whl \
    && ganserve --help > /dev/null

USER 10001:10001
WORKDIR /data

EXPOSE 8000

# Liveness of `ganserve api` (slim images have no curl; python's urllib does the GET).
# The worker and migrate containers serve no HTTP: docker-compose.yml overrides this check
# for them (a `ganserve worker` container started by hand will report "unhealthy").
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GANSERVE_PORT', '8000') + '/healthz', timeout=4)"]

ENTRYPOINT ["ganserve"]
CMD ["api", "--host", "0.0.0.0"]
