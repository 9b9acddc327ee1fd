#!/usr/bin/env bash
# Restore a backup made by backup.sh. Stop remote_guard first (poller and web app).
#
#   deploy/restore.sh --from BACKUP_DIR --database URL [--audit-file PATH] [--force]
#
# URL is where to restore (default: $REMOTE_GUARD_DATABASE__URL):
#   sqlite:////var/lib/remote-guard/remote_guard.db  the file must not exist, unless --force:
#       then it and its -wal/-shm files are moved aside (*.before-restore-<time>), never deleted
#       (a stale -wal beside a restored file would be replayed into it).
#   postgresql+psycopg://user@host/db                a new, empty database (createdb), unless
#       --force: then the backup's objects are dropped and recreated (pg_restore --clean).
# --audit-file is where [audit] file points (SQLite default: beside the database). The backup's
#   copy is trimmed to the restored database's last entry, so `remote-guard audit verify` finds
#   the two identical; an existing file is moved aside.
#
# Afterwards run:  remote-guard audit verify   then start remote_guard again.
set -euo pipefail
umask 077

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "restore.sh: $*" >&2; exit 1; }

database="${REMOTE_GUARD_DATABASE__URL:-}"
source_dir=""
audit_file=""
force=0
while [ $# -gt 0 ]; do
    case "$1" in
        --from) source_dir="${2:?}"; shift 2 ;;
        --database) database="${2:?}"; shift 2 ;;
        --audit-file) audit_file="${2:?}"; shift 2 ;;
        --force) force=1; shift ;;
        -h|--help) usage ;;
        *) echo "restore.sh: unknown argument $1" >&2; usage ;;
    esac
done
[ -n "$source_dir" ] || die "no --from backup folder"
[ -f "$source_dir/MANIFEST" ] || die "$source_dir is not a backup made by backup.sh (no MANIFEST)"
[ -n "$database" ] || die "no database: give --database URL or set REMOTE_GUARD_DATABASE__URL"

# The checksums written at backup time must still match.
(cd "$source_dir" && sed -n 's/^  //p' MANIFEST | sha256sum --check --quiet) \
    || die "the backup's files do not match their checksums in MANIFEST"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"

case "$database" in
    sqlite:///*)
        [ -f "$source_dir/database.sqlite" ] || die "this backup holds no SQLite database"
        path="${database#sqlite:///}"
        path="${path%%\?*}"
        [ -n "$audit_file" ] || audit_file="${path%.*}.audit.jsonl"
        if [ -e "$path" ]; then
            [ "$force" = 1 ] || die "$path exists; stop remote_guard and add --force to replace it"
            for suffix in "" -wal -shm; do
                [ ! -e "$path$suffix" ] || mv -- "$path$suffix" "$path$suffix.before-restore-$stamp"
            done
        fi
        mkdir -p "$(dirname "$path")"
        cp -- "$source_dir/database.sqlite" "$path.restoring"
        check="$(sqlite3 "$path.restoring" "PRAGMA integrity_check;")"
        [ "$check" = "ok" ] || die "the backup failed SQLite's integrity check: $check"
        mv -- "$path.restoring" "$path"
        head_seq="$(sqlite3 "$path" "SELECT seq FROM audit_head;")"
        ;;
    postgresql:*|postgresql+psycopg:*)
        [ -f "$source_dir/database.dump" ] || die "this backup holds no PostgreSQL dump"
        libpq_url="postgresql:${database#*:}"
        args=(--no-owner --no-privileges --exit-on-error --dbname="$libpq_url")
        if [ "$force" = 1 ]; then
            args+=(--clean --if-exists)
        else
            tables="$(psql --no-psqlrc --tuples-only --no-align --dbname="$libpq_url" --command \
                "SELECT count(*) FROM pg_tables WHERE tablename = 'audit_head'")"
            [ "$tables" = "0" ] || die "the database already holds remote_guard tables; restore into a new database (createdb) or add --force"
        fi
        pg_restore "${args[@]}" "$source_dir/database.dump"
        schema="$(sed -n 's/^schema: //p' "$source_dir/MANIFEST")"
        table="audit_head"
        [ -z "$schema" ] || table="\"$schema\".audit_head"
        head_seq="$(psql --no-psqlrc --tuples-only --no-align --dbname="$libpq_url" \
            --command "SELECT seq FROM $table")"
        ;;
    *) die "unsupported database URL (only sqlite:/// and postgresql+psycopg://)" ;;
esac

case "$head_seq" in
    ''|*[!0-9]*) die "cannot read the restored audit trail's head (got '$head_seq')" ;;
esac

if [ -f "$source_dir/audit.jsonl" ] && [ -n "$audit_file" ]; then
    [ ! -e "$audit_file" ] || mv -- "$audit_file" "$audit_file.before-restore-$stamp"
    mkdir -p "$(dirname "$audit_file")"
    # Entries are one per line, in order from #1: the first head_seq lines are exactly the
    # entries the restored database holds (the file was copied after the database).
    head -n "$head_seq" -- "$source_dir/audit.jsonl" > "$audit_file"
    lines="$(wc -l < "$audit_file" | tr -d ' ')"
    [ "$lines" = "$head_seq" ] || echo "restore.sh: the audit file has $lines entries, the database $head_seq; remote-guard audit verify will say which are missing" >&2
elif [ -n "$audit_file" ]; then
    echo "restore.sh: the backup has no audit file; audit verify will report $audit_file missing" >&2
fi

echo "restored $source_dir (audit trail up to entry #$head_seq)"
echo "now run: remote-guard audit verify   (then start remote_guard)"
