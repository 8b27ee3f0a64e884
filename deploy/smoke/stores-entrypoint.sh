#!/bin/sh
# Entry point of the smoke test's PostgreSQL/Redis stand-in image (stores.Dockerfile).
#   postgres [ARGS]        like the official image: a cluster in $PGDATA made on first start
#                          with $POSTGRES_USER / $POSTGRES_PASSWORD / $POSTGRES_DB; listens on
#                          $POSTGRES_LISTEN (default 127.0.0.1), port $PGPORT (default 5432)
#   redis-server [ARGS]    run as the redis user; $REDIS_PORT, when set, adds
#                          `--port $REDIS_PORT --bind 127.0.0.1` after ARGS (later flags win)
set -eu

as_user() {
    user=$1
    shift
    exec setpriv --reuid="$user" --regid="$user" --init-groups "$@"
}

case "${1:-}" in
postgres)
    shift
    : "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        pwfile=$(mktemp)
        printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
        chown postgres "$pwfile"
        setpriv --reuid=postgres --regid=postgres --init-groups \
            initdb --username="$POSTGRES_USER" --pwfile="$pwfile" \
            --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 > /dev/null
        rm -f "$pwfile"
        # Connections from outside the container's sockets need the password.
        echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
        if [ "$POSTGRES_DB" != postgres ]; then
            setpriv --reuid=postgres --regid=postgres --init-groups \
                postgres --single -D "$PGDATA" postgres > /dev/null <<SQL
CREATE DATABASE "$POSTGRES_DB" OWNER "$POSTGRES_USER";
SQL
        fi
        echo "stores-entrypoint: PostgreSQL cluster created in $PGDATA"
    fi
    as_user postgres postgres -D "$PGDATA" \
        -c listen_addresses="${POSTGRES_LISTEN:-127.0.0.1}" "$@"
    ;;
redis-server)
    chown redis:redis /data
    if [ -n "${REDIS_PORT:-}" ]; then
        as_user redis "$@" --port "$REDIS_PORT" --bind 127.0.0.1
    fi
    as_user redis "$@"
    ;;
*)
    exec "$@"
    ;;
esac
