# One image for every ganserve process: `api` (the default command), `worker` and `migrate`.
#
#   docker build -t ganserve .                                  # CUDA 13.0 wheels (GPU nodes)
#   docker build -t ganserve:cpu --build-arg TORCH_FLAVOUR=cpu .  # CPU-only wheels, much smaller
#
# TORCH_FLAVOUR names a wheel index under https://download.pytorch.org/whl/ and must be one
# that PyTorch publishes for TORCH_VERSION: for torch 2.13 that is cpu, cu126 (drivers older
# than CUDA 13's, and pre-Turing GPUs) or cu130 (the default; NVIDIA driver R580 or newer).
# The CUDA libraries come inside the wheels; the host needs only the NVIDIA driver and the
# NVIDIA container toolkit. See docs/deployment.md.

# ---------------------------------------------------------------------------------------
# builder: a virtual environment in /opt/venv with torch, the dependencies and ganserve.
FROM python:3.11-slim-bookworm AS builder

ARG TORCH_FLAVOUR=cu130
ARG TORCH_VERSION=2.13.0

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH

# Layer 1, torch, first and from PyTorch's own index: it is the largest download and the one
# that picks CPU or CUDA. The project's `torch>=2.10` is then already satisfied.
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir \
        --index-url "https://download.pytorch.org/whl/${TORCH_FLAVOUR}" \
        "torch==${TORCH_VERSION}"

# Layer 2, the dependencies, computed from pyproject.toml alone (plus the `postgres` extra
# for psycopg), so editing the source does not reinstall them.
WORKDIR /build
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['postgres']))" \
        > requirements.txt \
    && pip install --no-cache-dir -r requirements.txt

# Layer 3, ganserve itself, without touching the dependencies.
COPY README.md ./
COPY src ./src
RUN pip install --no-cache-dir --no-deps . \
    && ganserve --help > /dev/null

# ---------------------------------------------------------------------------------------
# runtime: the same slim Python, the venv, and an unprivileged user owning /data.
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

COPY --from=builder /opt/venv /opt/venv

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
