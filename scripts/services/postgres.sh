# PostgreSQL 15 on loopback for the state-store and lineage tests. Sourced by
# scripts/test.sh (and bench scripts) after scripts/lib.sh. Exports
# CAIRN_TEST_POSTGRES_URL (postgres://…/cairn_test).
_pg_bin=/usr/lib/postgresql/15/bin
if [ ! -x "$_pg_bin/initdb" ]; then
  apt_install postgresql-15
fi
_pg_port=$(free_port)
_pg_dir="$CAIRN_TMP/postgres"
# A data folder left by a killed run (same CAIRN_TMP) is scratch: stop any
# server still on it and start from an empty one, as initdb requires.
if [ -e "$_pg_dir/data/PG_VERSION" ]; then
  "$_pg_bin/pg_ctl" -D "$_pg_dir/data" -m immediate stop >/dev/null 2>&1 ||
    runuser -u postgres -- "$_pg_bin/pg_ctl" -D "$_pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$_pg_dir/data"
fi
mkdir -p "$_pg_dir/data" "$_pg_dir/sock"
# As root, PostgreSQL runs as the postgres user, which must reach its folder.
_pg_as=()
if [ "$(id -u)" = 0 ]; then
  chmod o+x "$CAIRN_TMP"
  chown -R postgres "$_pg_dir"
  _pg_as=(runuser -u postgres --)
fi
"${_pg_as[@]}" "$_pg_bin/initdb" -D "$_pg_dir/data" -U postgres -A trust -E UTF8 --no-sync >"$_pg_dir/initdb.log" 2>&1 ||
  { echo "initdb failed:"; cat "$_pg_dir/initdb.log"; return 1; }
"${_pg_as[@]}" "$_pg_bin/pg_ctl" -D "$_pg_dir/data" -l "$_pg_dir/log" -w -t 60 \
  -o "-h 127.0.0.1 -p $_pg_port -k $_pg_dir/sock -c fsync=off -c max_connections=200" start >/dev/null ||
  { echo "postgres did not start:"; cat "$_pg_dir/log"; return 1; }
on_exit "${_pg_as[*]} $_pg_bin/pg_ctl -D $_pg_dir/data -m immediate stop"
"${_pg_as[@]}" "$_pg_bin/createdb" -h 127.0.0.1 -p "$_pg_port" -U postgres cairn_test
export CAIRN_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$_pg_port/cairn_test?sslmode=disable"
echo "postgres on 127.0.0.1:$_pg_port"
