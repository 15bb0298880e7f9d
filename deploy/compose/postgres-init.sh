#!/bin/sh
# Runs once, when a service's database container starts on an empty volume: creates the
# service's own login role, not a superuser, with the password of SERVICE_DB_PASSWORD_FILE, and
# makes it the owner of the database, so that it can migrate it and nothing else.
set -eu
password=$(cat "$SERVICE_DB_PASSWORD_FILE")
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v role="$SERVICE_DB_USER" -v password="$password" -v db="$POSTGRES_DB" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
ALTER DATABASE :"db" OWNER TO :"role";
ALTER SCHEMA public OWNER TO :"role";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"role";
SQL
