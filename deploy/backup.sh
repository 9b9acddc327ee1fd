#!/usr/bin/env bash
# Back up remote_guard's database and its audit file, safely while remote_guard is running.
#
#   deploy/backup.sh --database URL --output DIR [--audit-file PATH] [--schema NAME]
#
# URL is [database] url (default: $REMOTE_GUARD_DATABASE__URL).
#   sqlite:////var/lib/remote-guard/remote_guard.db  -> SQLite's online backup API (.backup),
#       which copies a consistent snapshot even while the poller writes; copying the .db file
#       itself while it runs (WAL mode) can give a broken or incomplete copy.
#   postgresql+psycopg://user@host/db                -> pg_dump -Fc (one consistent snapshot).
#       The password comes from ~/.pgpass or PGPASSWORD, never from the command line.
# --audit-file is [audit] file; for SQLite it defaults to the file beside the database
#   (remote_guard.db -> remote_guard.audit.jsonl). It is copied after the database, so it holds
#   at least every entry the database copy has; restore.sh trims it to the database's head.
# --schema dumps only that PostgreSQL schema (a database shared with other applications).
#
# Writes DIR/remote_guard-<UTC time>/ with database.sqlite or database.dump, audit.jsonl if
# there is one, and MANIFEST (what, when, checksums), and prints that folder's path.
# Needs: sqlite3 (SQLite) or pg_dump and pg_restore (PostgreSQL, version >= the server's).
set -euo pipefail
umask 077  # the backup holds information about children: only its owner may read it

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "backup.sh: $*" >&2; exit 1; }

database="${REMOTE_GUARD_DATABASE__URL:-}"
output=""
audit_file=""
schema=""
while [ $# -gt 0 ]; do
    case "$1" in
        --database) database="${2:?}"; shift 2 ;;
        --output) output="${2:?}"; shift 2 ;;
        --audit-file) audit_file="${2:?}"; shift 2 ;;
        --schema) schema="${2:?}"; shift 2 ;;
        -h|--help) usage ;;
        *) echo "backup.sh: unknown argument $1" >&2; usage ;;
    esac
done
[ -n "$database" ] || die "no database: give --database URL or set REMOTE_GUARD_DATABASE__URL"
[ -n "$output" ] || die "no --output folder"

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
target="$output/remote_guard-$stamp"
mkdir -p "$target"

case "$database" in
    sqlite:///*)
        kind=sqlite
        path="${database#sqlite:///}"
        path="${path%%\?*}"
        [ -f "$path" ] || die "no SQLite database at $path"
        [ -n "$audit_file" ] || audit_file="${path%.*}.audit.jsonl"
        # The online backup API: consistent, includes what is still in the WAL, never blocks the
        # poller for long (it retries while the database is busy).
        sqlite3 "$path" ".timeout 10000" ".backup '$target/database.sqlite'"
        check="$(sqlite3 "$target/database.sqlite" "PRAGMA integrity_check;")"
        [ "$check" = "ok" ] || die "the copy failed SQLite's integrity check: $check"
        head_seq="$(sqlite3 "$target/database.sqlite" "SELECT seq FROM audit_head;" 2>/dev/null || echo "?")"
        files="database.sqlite"
        ;;
    postgresql:*|postgresql+psycopg:*)
        kind=postgresql
        libpq_url="postgresql:${database#*:}"
        args=(--format=custom --no-owner --no-privileges --file="$target/database.dump")
        [ -z "$schema" ] || args+=(--schema="$schema")
        pg_dump "${args[@]}" "$libpq_url"
        # Reading the table of contents back proves the archive is complete and readable.
        pg_restore --list "$target/database.dump" >/dev/null || die "the dump cannot be read back"
        head_seq="(read at restore)"
        files="database.dump"
        ;;
    *) die "unsupported database URL (only sqlite:/// and postgresql+psycopg://)" ;;
esac

if [ -n "$audit_file" ] && [ -f "$audit_file" ]; then
    cp -- "$audit_file" "$target/audit.jsonl"
    files="$files audit.jsonl"
elif [ -n "$audit_file" ]; then
    echo "backup.sh: no audit file at $audit_file; backing up the database only" >&2
fi

# The source without any password, for the record.
shown="$(printf '%s' "$database" | sed -E 's#^([a-z+]+://[^/@:]*):[^/@]*@#\1:***@#')"
{
    echo "remote_guard backup"
    echo "created: $stamp"
    echo "kind: $kind"
    echo "source: $shown"
    [ -z "$schema" ] || echo "schema: $schema"
    echo "audit_head_seq: $head_seq"
    echo "sha256:"
    (cd "$target" && sha256sum $files | sed 's/^/  /')
} > "$target/MANIFEST"
echo "$target"
