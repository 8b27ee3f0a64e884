# The smoke test's stand-in for `python:3.11-slim-bookworm`, which it cannot pull (no image
# registry is reachable where it runs): Debian's own Python 3.11 on a `debootstrap
# --variant=minbase` of the same release, imported as ganserve-smoke/debian:bookworm.
# What the project's Dockerfile uses of the real image is here too: `python` on the PATH,
# `python -m venv` with pip (ensurepip), groupadd/useradd, C.UTF-8. It is tagged with the
# real image's name only where that name is free (deploy/smoke.sh checks).
ARG DEBIAN_IMAGE=ganserve-smoke/debian:bookworm
FROM ${DEBIAN_IMAGE}
ARG PYTHON=3.11

# Unpinned on purpose: the release's current Python, as the real image follows it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        "python${PYTHON}" "python${PYTHON}-venv" ca-certificates netbase tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s "/usr/bin/python${PYTHON}" /usr/local/bin/python \
    && ln -s "/usr/bin/python${PYTHON}" /usr/local/bin/python3

ENV LANG=C.UTF-8
LABEL org.ganserve.smoke.stand-in="python:3.11-slim-bookworm"
CMD ["python3"]
