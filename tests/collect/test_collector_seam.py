"""The collector's new reads at the Graph seam: a scripted Graph that records what was asked.

The scripted Graph answers ``iter_items`` page by page, lazily, as the real client does, so a
test can tell which pages the collector asked for and which it never needed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, cast

from remote_guard.collect.collector import (
    EXPANDED_MEMBERS_CAP,
    Collector,
    session_id_for_chat,
)
from remote_guard.collect.snapshot import Person, PersonKind, SessionKind
from remote_guard.directory.service import Directory
from remote_guard.graph.client import GraphClient
from remote_guard.graph.errors import GraphPermissionError
from remote_guard.settings import Settings, settings_from_mapping

TENANT = "7d9f3e2a-1b4c-4e8d-9a6f-5c2b1e0d4a37"
NOW = datetime(2026, 11, 18, 16, 0, tzinfo=UTC)
WINDOW_START = datetime(2026, 11, 17, 4, 0, tzinfo=UTC)
TEACHER = "11111111-1111-1111-1111-111111111111"
PUPIL = "22222222-2222-2222-2222-222222222222"
CHAT = "19:22222222-2222-2222-2222-222222222222_11111111-1111-1111-1111-111111111111@unq.gbl.spaces"


class ScriptedGraph:
    """Answers with canned pages per path; ``asked`` lists (path, page number) as read."""

    def __init__(
        self,
        pages: Mapping[str, list[list[dict[str, Any]]]],
        *,
        failing: frozenset[str] = frozenset(),
    ) -> None:
        self.pages = pages
        self.failing = failing
        self.asked: list[tuple[str, int]] = []
        self.params: dict[str, Mapping[str, str] | None] = {}

    def _fail_if_asked(self, path: str) -> None:
        if path in self.failing:
            raise GraphPermissionError("Forbidden.", status=403, endpoint=path)

    def iter_items(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        self.params[path] = params
        for number, page in enumerate(self.pages.get(path, [[]]), start=1):
            self.asked.append((path, number))
            self._fail_if_asked(path)
            yield from page

    def get(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        self.params[path] = params
        self.asked.append((path, 1))
        self._fail_if_asked(path)
        pages = self.pages.get(path, [[]])
        return {"value": pages[0]}


def _settings() -> Settings:
    return settings_from_mapping(
        {
            "tenant": {"tenant_id": TENANT, "client_id": "app", "client_secret": "not-real"},
            "directory": {
                "staff_group_ids": ["aaaaaaaa-0000-0000-0000-000000000001"],
                "pupil_group_ids": ["aaaaaaaa-0000-0000-0000-000000000002"],
            },
        },
        source="test",
    )


def _directory() -> Directory:
    directory = Directory(tenant_id=TENANT)
    for person_id, name, kind in (
        (TEACHER, "Mrs Jones", PersonKind.STAFF),
        (PUPIL, "Amelia K.", PersonKind.PUPIL),
    ):
        directory.people[person_id] = Person(
            id=person_id, display_name=name, kind=kind, tenant_id=TENANT
        )
    return directory


def _collector(graph: ScriptedGraph) -> Collector:
    return Collector(
        graph=cast(GraphClient, graph),
        settings=_settings(),
        directory=_directory(),
        clock=lambda: NOW,
    )


def _member(user_id: str, name: str) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.aadUserConversationMember",
        "id": f"member-{user_id}",
        "displayName": name,
        "userId": user_id,
        "tenantId": TENANT,
    }


def _chat(members: list[dict[str, Any]], *, chat_type: str = "oneOnOne") -> dict[str, Any]:
    return {"id": CHAT, "chatType": chat_type, "topic": None, "members": members}


def _message(message_id: str, created: str, sender: str) -> dict[str, Any]:
    return {
        "id": message_id,
        "messageType": "message",
        "createdDateTime": created,
        "from": {"user": {"id": sender, "displayName": None, "userIdentityType": "aadUser"}},
        "body": {"contentType": "html", "content": "<p>hi</p>"},
    }


def _chats(graph: ScriptedGraph) -> list[Any]:
    collector = _collector(graph)
    return list(collector._direct_chats(WINDOW_START, NOW, set()))


def test_messages_are_read_newest_first_and_paging_stops_at_the_window() -> None:
    """Ordered by createdDateTime desc, the first message older than the window ends the read:
    the page after it is never asked for."""
    messages = f"/chats/{CHAT}/messages"
    graph = ScriptedGraph(
        {
            f"/users/{TEACHER}/chats": [[_chat([_member(TEACHER, "Mrs Jones"), _member(PUPIL, "Amelia K.")])]],
            messages: [
                [_message("3", "2026-11-18T09:00:00Z", PUPIL), _message("2", "2026-11-17T20:00:00Z", TEACHER)],
                [_message("1", "2026-11-16T20:00:00Z", PUPIL), _message("0", "2026-11-16T19:00:00Z", PUPIL)],
                [_message("-1", "2026-11-10T19:00:00Z", PUPIL)],
            ],
        }
    )  # fmt: skip

    (collected,) = _chats(graph)

    snapshot = collected.snapshot
    assert snapshot.kind is SessionKind.DIRECT_CHAT
    assert snapshot.session_id == session_id_for_chat(CHAT)
    assert [m.message_id for m in snapshot.chat or []] == ["2", "3"]
    assert [page for path, page in graph.asked if path == messages] == [1, 2]
    assert graph.params[messages] == {"$top": "50", "$orderby": "createdDateTime desc"}
    assert graph.params[f"/users/{TEACHER}/chats"] == {"$expand": "members", "$top": "50"}
    assert collected.final is False


def test_a_chat_with_no_message_in_the_window_is_not_kept() -> None:
    graph = ScriptedGraph(
        {
            f"/users/{TEACHER}/chats": [[_chat([_member(TEACHER, "Mrs Jones"), _member(PUPIL, "Amelia K.")])]],
            f"/chats/{CHAT}/messages": [[_message("1", "2026-11-16T20:00:00Z", PUPIL)]],
        }
    )  # fmt: skip

    assert _chats(graph) == []


def test_a_chat_without_a_pupil_is_not_read_further() -> None:
    """Staff among themselves: the messages are never asked for (data minimisation)."""
    other = "33333333-3333-3333-3333-333333333333"
    graph = ScriptedGraph(
        {f"/users/{TEACHER}/chats": [[_chat([_member(TEACHER, "Mrs Jones"), _member(other, "Someone")])]]}
    )  # fmt: skip

    assert _chats(graph) == []
    assert not any(path.endswith("/messages") for path, _ in graph.asked)


def test_meeting_chats_are_left_to_their_meeting() -> None:
    graph = ScriptedGraph(
        {
            f"/users/{TEACHER}/chats": [
                [_chat([_member(TEACHER, "Mrs Jones"), _member(PUPIL, "Amelia K.")], chat_type="meeting")]
            ]
        }
    )  # fmt: skip

    assert _chats(graph) == []


def test_an_expanded_member_list_at_graphs_cap_is_read_in_full() -> None:
    """25 expanded members may be a truncated list: /chats/{id}/members gives them all."""
    fillers = [
        _member(f"44444444-4444-4444-4444-{n:012d}", f"Adult {n}")
        for n in range(EXPANDED_MEMBERS_CAP - 1)
    ]
    expanded = [_member(TEACHER, "Mrs Jones"), *fillers]
    graph = ScriptedGraph(
        {
            f"/users/{TEACHER}/chats": [[_chat(expanded, chat_type="group")]],
            f"/chats/{CHAT}/members": [[*expanded, _member(PUPIL, "Amelia K.")]],
            f"/chats/{CHAT}/messages": [[_message("1", "2026-11-18T09:00:00Z", TEACHER)]],
        }
    )

    (collected,) = _chats(graph)

    assert PUPIL in collected.snapshot.member_ids
    assert len(collected.snapshot.member_ids) == EXPANDED_MEMBERS_CAP + 1


def test_unreadable_messages_are_missing_with_the_reason() -> None:
    messages = f"/chats/{CHAT}/messages"
    graph = ScriptedGraph(
        {
            f"/users/{TEACHER}/chats": [[_chat([_member(TEACHER, "Mrs Jones"), _member(PUPIL, "Amelia K.")])]],
            messages: [[_message("1", "2026-11-18T09:00:00Z", PUPIL)]],
        },
        failing=frozenset({messages}),
    )  # fmt: skip

    (collected,) = _chats(graph)

    assert collected.snapshot.chat is None
    assert "403" in collected.snapshot.missing["chat"]


def test_an_unlistable_chat_list_is_a_poll_error() -> None:
    chats = f"/users/{TEACHER}/chats"
    graph = ScriptedGraph({}, failing=frozenset({chats}))
    collector = _collector(graph)

    assert list(collector._direct_chats(WINDOW_START, NOW, set())) == []
    assert len(collector.errors) == 1
    assert collector.errors[0].startswith(f"chats of {TEACHER}")


def test_a_group_address_is_looked_up_once_per_run() -> None:
    """Two invitations to the same class group: one /groups lookup, one members read."""
    group_id = "55555555-5555-5555-5555-555555555555"
    graph = ScriptedGraph(
        {
            "/groups": [[{"id": group_id, "displayName": "Oak Class", "mail": "oak@school.example"}]],
            f"/groups/{group_id}/transitiveMembers": [
                [{"@odata.type": "#microsoft.graph.user", "id": PUPIL, "displayName": "Amelia K."}]
            ],
        }
    )  # fmt: skip
    collector = _collector(graph)

    first = collector._invited_group("Oak@School.example")
    second = collector._invited_group("oak@school.example")

    assert first is not None
    assert second is first
    assert [member.id for member in first.members] == [PUPIL]
    assert [path for path, _ in graph.asked] == ["/groups", f"/groups/{group_id}/transitiveMembers"]
    assert graph.params["/groups"] == {
        "$filter": "mail eq 'oak@school.example'",
        "$select": "id,displayName,mail",
    }


def test_an_address_that_is_no_group_is_not_an_error() -> None:
    graph = ScriptedGraph({"/groups": [[]]})
    collector = _collector(graph)

    assert collector._invited_group("parent@home.example") is None
    assert collector.errors == []


def test_a_failed_group_lookup_is_recorded_once() -> None:
    graph = ScriptedGraph({}, failing=frozenset({"/groups"}))
    collector = _collector(graph)

    assert collector._invited_group("oak@school.example") is None
    assert collector._invited_group("oak@school.example") is None
    assert len(collector.errors) == 1
    assert "oak@school.example" in collector.errors[0]
