# Shared by scripts/run and scripts/test: make sure PostgreSQL, Redis and RabbitMQ answer on
# 127.0.0.1, starting (and on a bare machine installing) them when they do not.
# shellcheck shell=bash

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port name seconds
  local i
  for ((i = 0; i < $3 * 4; i++)); do
    port_open "$1" && return 0
    sleep 0.25
  done
  die "$2 did not come up on 127.0.0.1:$1 within $3 s"
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=
apt_install() {
  command -v apt-get >/dev/null || die "cannot install $*: no apt-get here; install it yourself or use docker compose"
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

docker_engine() { command -v docker >/dev/null && docker info >/dev/null 2>&1 && compose version >/dev/null 2>&1; }

# `docker compose` (v2 plugin) or the standalone `docker-compose`.
compose() { if docker compose version >/dev/null 2>&1; then docker compose "$@"; else docker-compose "$@"; fi; }

ensure_postgres() {
  port_open 5432 && return 0
  if docker_engine; then compose up -d postgres; wait_port 5432 PostgreSQL 60; return; fi
  if ! compgen -G "/etc/postgresql/*/main" >/dev/null; then
    log "installing PostgreSQL"
    apt_install postgresql
    local conf
    conf=$(ls -d /etc/postgresql/*/main | sort -V | tail -n 1)
    # Local development: trust loopback connections, as the project's URLs expect.
    as_root sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$conf/pg_hba.conf"
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_port 5432 PostgreSQL 60
}

ensure_redis() {
  port_open 6379 && return 0
  if docker_engine; then compose up -d redis; wait_port 6379 Redis 30; return; fi
  command -v redis-server >/dev/null || { log "installing Redis"; apt_install redis-server; }
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/redis-dev.log >/dev/null
  wait_port 6379 Redis 30
}

ensure_rabbitmq() {
  port_open 5672 && return 0
  if docker_engine; then compose up -d rabbitmq; wait_port 5672 RabbitMQ 90; return; fi
  command -v rabbitmq-server >/dev/null || { log "installing RabbitMQ"; apt_install rabbitmq-server; }
  log "starting RabbitMQ"
  as_root rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_port 5672 RabbitMQ 120
}

ensure_services() {
  ensure_postgres
  ensure_redis
  ensure_rabbitmq
}

ensure_toolchain() {
  command -v cargo >/dev/null || die "cargo is missing: install Rust (rustup) first"
  if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install cargo-nextest --locked
  fi
}

# The Standard Webhooks authors' Python library, which the event tests verify deliveries
# with (an implementation independent of the product's signer), in target/standardwebhooks.
ensure_standardwebhooks() {
  local venv=target/standardwebhooks version=1.1.0
  if [ ! -e "$venv/ready-$version" ]; then
    log "installing standardwebhooks $version"
    python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$venv"; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check "standardwebhooks==$version"
    touch "$venv/ready-$version"
  fi
  STANDARDWEBHOOKS_PYTHON="$PWD/$venv/bin/python"
  export STANDARDWEBHOOKS_PYTHON
}

# Debian's Chromium and its WebDriver, which the console's browser test drives headless.
ensure_chromium() {
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    log "installing chromium and chromium-driver (Debian's packages) for the console's browser test"
    apt_install chromium chromium-driver
  fi
}
