# postgres:15 (postgres:15-bookworm): Debian bookworm's postgresql-15 with a small entrypoint
# following the official image's contract: an empty $PGDATA (/var/lib/postgresql/data) is
# initialised for superuser $POSTGRES_USER (postgres) with password $POSTGRES_PASSWORD (host
# connections then need it; without one they are trusted) and database $POSTGRES_DB, then
# `postgres` runs listening on every address; user postgres is uid/gid 999 as upstream.
# Differs: Debian's build and paths (/usr/lib/postgresql/15/bin), no initdb scripts directory.
NAMES=(postgres:15 postgres:15-bookworm)
INPUTS=()
CONFIG=(--config.entrypoint /usr/local/bin/docker-entrypoint.sh --config.cmd postgres
  --config.user 999:999 --config.env PGDATA=/var/lib/postgresql/data
  --config.env PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
build_rootfs() {
  debootstrap_into "$1" "postgresql-15"
  # The package's own cluster is not the image's: $PGDATA is made at first start.
  rm -rf "$1"/var/lib/postgresql/15 "$1"/etc/postgresql/15
  chroot "$1" groupmod -g 999 postgres
  chroot "$1" usermod -u 999 -g 999 postgres
  mkdir -p "$1"/var/lib/postgresql/data "$1"/run/postgresql "$1"/usr/local/bin
  chown -R 999:999 "$1"/var/lib/postgresql "$1"/run/postgresql
  chmod 700 "$1"/var/lib/postgresql/data
  cat >"$1"/usr/local/bin/docker-entrypoint.sh <<'SCRIPT'
#!/bin/sh
set -eu
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  user="${POSTGRES_USER:-postgres}"
  mkdir -p "$PGDATA" && chmod 700 "$PGDATA"
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    auth=scram-sha-256
  else
    initdb -D "$PGDATA" -U "$user" --auth=trust >/dev/null
    auth=trust
  fi
  echo "host all all all $auth" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  db="${POSTGRES_DB:-$user}"
  if [ "$db" != postgres ]; then
    echo "CREATE DATABASE \"$db\"" | postgres --single -D "$PGDATA" -j postgres >/dev/null
  fi
  echo "postgres: initialised $PGDATA (superuser $user, database $db)"
fi
exec "$@"
SCRIPT
  chmod 755 "$1"/usr/local/bin/docker-entrypoint.sh
}
