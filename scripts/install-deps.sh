#!/usr/bin/env bash
# Installs what Gatehouse's quickstart and tests need on a Debian/Ubuntu machine, skipping whatever is
# already there. Safe to run repeatedly. Go itself must already be installed (https://go.dev/dl/).
set -euo pipefail

need=()
have_pg_server() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }
have_pg_server || need+=(postgresql)
command -v psql >/dev/null || need+=(postgresql-client)
command -v openssl >/dev/null || need+=(openssl)
for extra in "$@"; do
  case "$extra" in
    mariadb) command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server mariadb-client) ;;
    softhsm) command -v softhsm2-util >/dev/null || need+=(softhsm2 opensc) ;;
    pgbouncer) command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer) ;;
    chromium) command -v chromium >/dev/null || need+=(chromium) ;;
  esac
done

if [ ${#need[@]} -gt 0 ]; then
  echo "install-deps: installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

command -v go >/dev/null || { echo "install-deps: Go is not installed; see https://go.dev/dl/" >&2; exit 1; }
go mod download
