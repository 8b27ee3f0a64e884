# The smoke test's stand-in for the `postgres` and `redis` images of docker-compose.yml, from
# Debian's packages (no image registry is reachable where it runs): PostgreSQL 15 and Redis
# 7.0 of bookworm in one image. stores-entrypoint.sh gives it the interface the compose file
# uses: the POSTGRES_* variables and PGDATA of the official postgres image (default command
# `postgres`), and `redis-server ...` run as the redis user in /data.
ARG DEBIAN_IMAGE=ganserve-smoke/debian:bookworm
FROM ${DEBIAN_IMAGE}

# No cluster at install time: the entrypoint creates one in the volume on first start.
# hadolint ignore=DL3008
RUN mkdir -p /etc/postgresql-common/createcluster.d \
    && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/smoke.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /data \
    && chown postgres:postgres /var/lib/postgresql/data \
    && chown redis:redis /data

COPY stores-entrypoint.sh /usr/local/bin/stores-entrypoint

ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
WORKDIR /data
LABEL org.ganserve.smoke.stand-in="postgres:16 redis:7"
ENTRYPOINT ["stores-entrypoint"]
CMD ["postgres"]
