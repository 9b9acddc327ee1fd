"""Every kind of tampering is detected, and the first bad entry is named."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from remote_guard.audit.chain import Header, content_digest, entry_hash, utc_text
from remote_guard.audit.models import AuditEntryRow
from remote_guard.audit.verify import VerifyReport, verify
from tests.audit.conftest import KEY, START, Store

ENTRIES = AuditEntryRow.__table__


def _check(store: Store) -> VerifyReport:
    return verify(store.engine, store.config)


def _first(store: Store) -> tuple[int | None, str, str]:
    report = _check(store)
    assert not report.ok, "tampering went unnoticed"
    first = report.first
    assert first is not None
    return first.seq, first.where, first.message


def _row(store: Store, seq: int) -> dict[str, object]:
    with store.engine.connect() as connection:
        row = connection.execute(sa.select(ENTRIES).where(ENTRIES.c.seq == seq)).one()
    return dict(row._mapping)


def _update(store: Store, seq: int, **values: object) -> None:
    with store.engine.begin() as connection:
        connection.execute(sa.update(ENTRIES).where(ENTRIES.c.seq == seq).values(**values))


def _flip(text: str, index: int) -> str:
    """``text`` with the character at ``index`` changed by one bit."""
    return text[:index] + chr(ord(text[index]) ^ 1) + text[index + 1 :]


def test_untouched_trail_verifies(store: Store) -> None:
    """Ten entries written one transaction each: the chain, the head and the file all agree."""
    store.write(10)

    report = _check(store)

    assert report.ok, [str(p) for p in report.problems]
    assert (report.entries, report.head_seq, report.file_lines) == (10, 10, 10)
    lines = store.file.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, 11))
    assert json.loads(lines[-1])["hash"] == report.head_hash


def test_flipped_byte_in_content_is_named(store: Store) -> None:
    """One bit changed in entry 5's content: entry 5 is named, as edited content."""
    store.write(10)
    store.drop_guards()
    payload = str(_row(store, 5)["payload"])
    store.sql(
        "UPDATE audit_entries SET payload = :p WHERE seq = 5",
        p=_flip(payload, payload.index("fail") + 1),
    )

    seq, where, message = _first(store)

    assert (seq, where) == (5, "table")
    assert "content does not match the digest" in message


def test_flipped_byte_in_header_is_named(store: Store) -> None:
    """One bit changed in entry 7's action: its hash no longer matches its fields."""
    store.write(10)
    store.drop_guards()
    store.sql("UPDATE audit_entries SET action = 'finding.chanfed' WHERE seq = 7")

    seq, where, message = _first(store)

    assert (seq, where) == (7, "table")
    assert "hash does not match its fields" in message


def test_time_moved_by_a_microsecond_is_named(store: Store) -> None:
    """Entry 3's time moved by one microsecond is an edit of entry 3."""
    store.write(10)
    store.drop_guards()
    _update(store, 3, at=START + timedelta(minutes=2, microseconds=1))

    seq, where, message = _first(store)

    assert (seq, where) == (3, "table")
    assert "hash does not match" in message


def test_flipped_byte_in_file_is_named(store: Store) -> None:
    """One bit changed on line 4 of the JSON-lines file: entry 4 of the file is named."""
    store.write(10)
    lines = store.file.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[3] = _flip(lines[3], lines[3].index('"action"') + 12)
    store.file.write_text("".join(lines), encoding="utf-8")

    seq, where, message = _first(store)

    assert (seq, where) == (4, "file")
    assert "line 4 differs from the database" in message
    assert "action" in message


def test_deleted_row_is_named(store: Store) -> None:
    """Entry 6 deleted: the gap is named at 6."""
    store.write(10)
    store.drop_guards()
    store.sql("DELETE FROM audit_entries WHERE seq = 6")

    seq, where, message = _first(store)

    assert (seq, where) == (6, "table")
    assert "is missing" in message


def test_deleted_last_rows_are_named(store: Store) -> None:
    """The last two entries deleted: the head row still names #10, so #9 is named missing."""
    store.write(10)
    store.drop_guards()
    store.sql("DELETE FROM audit_entries WHERE seq >= 9")

    report = _check(store)

    assert report.first is not None
    assert (report.first.seq, report.first.where) == (9, "table")
    assert "the head records #10" in report.first.message
    assert any(
        p.where == "file" and "the database does not have" in p.message for p in report.problems
    )


def test_swapped_rows_are_named(store: Store) -> None:
    """Entries 4 and 5 exchanged (their sequence numbers swapped): #4 is named."""
    store.write(10)
    store.drop_guards()
    store.sql("UPDATE audit_entries SET seq = -4 WHERE seq = 4")
    store.sql("UPDATE audit_entries SET seq = 4 WHERE seq = 5")
    store.sql("UPDATE audit_entries SET seq = 5 WHERE seq = -4")

    seq, where, message = _first(store)

    assert (seq, where) == (4, "table")
    assert "does not follow entry #3" in message


def test_swapped_contents_are_named(store: Store) -> None:
    """Entries 4 and 5 exchange everything but their sequence numbers: #4 is named."""
    store.write(10)
    store.drop_guards()
    four, five = _row(store, 4), _row(store, 5)
    columns = [c for c in four if c != "seq"]
    # Unique hashes: park one row's hash while the other takes it.
    _update(store, 4, hash="parked")
    _update(store, 5, **{c: four[c] for c in columns})
    _update(store, 4, **{c: five[c] for c in columns})

    seq, where, _message = _first(store)

    assert (seq, where) == (4, "table")


def _forge(store: Store, seq: int, previous: str, *, key: bytes | None) -> dict[str, object]:
    """A well-formed entry as someone with database access but without the key would make."""
    at = START.replace(hour=23)
    payload = '{"after":{"status":"pass"},"before":{"status":"fail"}}'
    salt = "00" * 16
    header = Header(
        seq=seq,
        at=utc_text(at),
        actor_id="dsl-1",
        actor_role="dsl",
        action="finding.changed",
        object_type="finding",
        object_id="finding-forged",
        run_id=None,
        content=content_digest(salt, payload),
        prev=previous,
    )
    return {
        "seq": seq,
        "at": at,
        "actor_id": header.actor_id,
        "actor_role": header.actor_role,
        "action": header.action,
        "object_type": header.object_type,
        "object_id": header.object_id,
        "run_id": None,
        "payload": payload,
        "salt": salt,
        "content_digest": header.content,
        "prev_hash": previous,
        "hash": entry_hash(header, key),
        "keyed": key is not None,
    }


def _insert(store: Store, values: dict[str, object]) -> None:
    with store.engine.begin() as connection:
        connection.execute(ENTRIES.insert().values(**values))


def test_forged_row_inserted_in_the_middle_is_named(store: Store) -> None:
    """A forged entry slipped in as #5 (later entries renumbered, head moved on), with a correct
    unkeyed hash: the file still holds the real #5, so #5 is named."""
    store.write(10)
    store.drop_guards()
    store.sql("UPDATE audit_entries SET seq = -seq WHERE seq >= 5")
    store.sql("UPDATE audit_entries SET seq = 1 - seq WHERE seq < 0")
    previous = str(_row(store, 4)["hash"])
    _insert(store, _forge(store, 5, previous, key=None))
    last = _row(store, 11)
    store.sql("UPDATE audit_head SET seq = 11, hash = :h", h=str(last["hash"]))

    report = _check(store)

    assert report.first is not None
    assert (report.first.seq, report.first.where) == (5, "file")
    # The entry after the forged one was renumbered, which its hash covers.
    assert any(p.seq == 6 and p.where == "table" for p in report.problems)


def test_forged_row_appended_without_the_key_is_named(keyed_store: Store) -> None:
    """With the HMAC key configured, a forged #11 with a plain SHA-256 hash is named, whether
    it claims to be signed or not."""
    keyed_store.write(10)
    head = str(_row(keyed_store, 10)["hash"])
    forged = _forge(keyed_store, 11, head, key=None)
    _insert(keyed_store, forged)
    keyed_store.sql("UPDATE audit_head SET seq = 11, hash = :h", h=str(forged["hash"]))

    seq, where, message = _first(keyed_store)
    assert (seq, where) == (11, "table")
    assert "not signed with the key" in message

    keyed_store.drop_guards()
    keyed_store.sql("DELETE FROM audit_entries WHERE seq = 11")
    guessed = _forge(keyed_store, 11, head, key=b"a guess at the key, 32 characters")
    _insert(keyed_store, guessed)
    keyed_store.sql("UPDATE audit_head SET seq = 11, hash = :h", h=str(guessed["hash"]))

    seq, where, message = _first(keyed_store)
    assert (seq, where) == (11, "table")
    assert "forged without the key" in message


def test_forged_row_appended_with_a_correct_unkeyed_hash_is_caught_by_the_file(
    store: Store,
) -> None:
    """Without a key, a forger can extend the table's chain and head correctly; the JSON-lines
    file does not have the entry, so #11 is named."""
    store.write(10)
    forged = _forge(store, 11, str(_row(store, 10)["hash"]), key=None)
    _insert(store, forged)
    store.sql("UPDATE audit_head SET seq = 11, hash = :h", h=str(forged["hash"]))

    seq, where, message = _first(store)

    assert (seq, where) == (11, "file")
    assert "the file ends after line 10" in message


def test_file_cut_mid_line_is_named(store: Store) -> None:
    """The file truncated in the middle of its last line: entry 10's line is cut short."""
    store.write(10)
    data = store.file.read_bytes()
    store.file.write_bytes(data[:-40])

    seq, where, message = _first(store)

    assert (seq, where) == (10, "file")
    assert "cut short" in message


def test_file_missing_its_last_lines_is_named(store: Store) -> None:
    """The file truncated to its first seven lines: entry 8 is named missing from the file."""
    store.write(10)
    lines = store.file.read_text(encoding="utf-8").splitlines(keepends=True)
    store.file.write_text("".join(lines[:7]), encoding="utf-8")

    seq, where, message = _first(store)

    assert (seq, where) == (8, "file")
    assert "the file ends after line 7" in message


def test_file_emptied_or_deleted_is_named(store: Store) -> None:
    """An emptied file names entry 1; a deleted file says the file does not exist."""
    store.write(3)
    store.file.write_text("", encoding="utf-8")
    assert _first(store)[:2] == (1, "file")

    store.file.unlink()
    seq, where, message = _first(store)
    assert (seq, where) == (1, "file")
    assert "does not exist" in message


def test_content_blanked_without_a_purge_is_named(store: Store) -> None:
    """Content removed the way a purge would, but with no audited purge: entry 2 is named."""
    store.write(4)
    store.sql("UPDATE audit_entries SET payload = NULL, salt = NULL WHERE seq = 2")

    seq, where, message = _first(store)

    assert (seq, where) == (2, "table")
    assert "no later audited purge removed it" in message


def test_database_refuses_edits_and_deletes(store: Store) -> None:
    """The triggers refuse a delete and any update other than blanking content."""
    store.write(2)

    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        store.sql("DELETE FROM audit_entries WHERE seq = 1")
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        store.sql("UPDATE audit_entries SET action = 'x' WHERE seq = 1")
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        store.sql("UPDATE audit_entries SET payload = '{}' WHERE seq = 1")
    store.sql("UPDATE audit_entries SET payload = NULL, salt = NULL WHERE seq = 1")
    assert _row(store, 1)["payload"] is None


def test_keyed_trail_needs_the_key(keyed_store: Store) -> None:
    """A signed trail verifies with the key; without it, verify says it cannot check."""
    keyed_store.write(3)
    assert _check(keyed_store).ok
    assert _check(keyed_store).keyed == 3

    without = verify(keyed_store.engine, type(keyed_store.config)(file=keyed_store.file))

    assert without.first is not None
    assert "cannot be checked without it" in without.first.message


def test_unkeyed_trail_fails_when_a_key_is_expected(store: Store) -> None:
    """A key configured but no entry signed: the trail may have been rebuilt without it."""
    store.write(2)

    report = verify(store.engine, type(store.config)(file=store.file, key=KEY.encode()))

    assert any("no entry is signed" in p.message for p in report.problems)
