#!/usr/bin/env sh
# Creates or updates the owner and worker roles, and the API role if PG_API_ROLE is set (roles.sql), in one database.
#
#   PGHOST=… PGUSER=<superuser> PGDATABASE=aiworker \
#   PG_OWNER_ROLE=aiworker_owner PG_WORKER_ROLE=aiworker_worker \
#   PG_OWNER_PASSWORD_FILE=/run/secrets/owner PG_WORKER_PASSWORD_FILE=/run/secrets/worker \
#   ops/postgres/apply-roles.sh
#
# Connection: the usual libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD or
# ~/.pgpass, PGSSLMODE …). Passwords come from PG_OWNER_PASSWORD / PG_WORKER_PASSWORD or from the
# files named by the *_FILE variables (PG_API_PASSWORD / PG_API_PASSWORD_FILE for the API role); all may be absent (the roles keep their passwords).
# They reach psql on standard input, never on a command line (which `ps` shows).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
: "${PG_OWNER_ROLE:=aiworker_owner}"
: "${PG_WORKER_ROLE:=aiworker_worker}"

secret() { # secret VALUE FILE: the value, else the file's content without its last newline
  if [ -n "$1" ]; then printf '%s' "$1"; elif [ -n "$2" ]; then cat "$2"; fi
}

quote() { # a psql \set argument: single-quoted, quotes and backslashes escaped
  printf "'%s'" "$(printf '%s' "$1" | sed -e "s/\\\\/\\\\\\\\/g" -e "s/'/\\\\'/g")"
}

owner_password=$(secret "${PG_OWNER_PASSWORD:-}" "${PG_OWNER_PASSWORD_FILE:-}")
worker_password=$(secret "${PG_WORKER_PASSWORD:-}" "${PG_WORKER_PASSWORD_FILE:-}")
api_password=$(secret "${PG_API_PASSWORD:-}" "${PG_API_PASSWORD_FILE:-}")

{
  [ -n "$owner_password" ] && printf '\\set owner_password %s\n' "$(quote "$owner_password")"
  [ -n "$worker_password" ] && printf '\\set worker_password %s\n' "$(quote "$worker_password")"
  [ -n "${PG_API_ROLE:-}" ] && printf '\\set api_role %s\n' "$(quote "$PG_API_ROLE")"
  [ -n "${PG_API_ROLE:-}" ] && [ -n "$api_password" ] && printf '\\set api_password %s\n' "$(quote "$api_password")"
  printf '\\i %s\n' "$(quote "$here/roles.sql")"
} | psql -X -q -v ON_ERROR_STOP=1 -v owner_role="$PG_OWNER_ROLE" -v worker_role="$PG_WORKER_ROLE" -f -
