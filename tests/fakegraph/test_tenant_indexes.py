"""The tenant's lookups by join URL, onlineMeeting id, call id and chat member stay right when
meetings and chats change while it serves (they are indexed, not scanned)."""

from __future__ import annotations

from dataclasses import replace

from remote_guard.fakegraph.scenario import Scenario
from remote_guard.fakegraph.tenant import TenantState

from .conftest import FakeClock


def test_a_meeting_replaced_at_run_time_is_found_by_its_new_join_url(
    scenario: Scenario, clock: FakeClock
) -> None:
    """Replacing a meeting under its key updates the join URL index."""
    state = TenantState(scenario, clock=clock)
    lesson = state.meetings["lesson"]
    assert state.meeting_by_join_url(lesson.join_url or "") is lesson

    moved = replace(lesson, join_url="https://teams.microsoft.com/l/meetup-join/moved/0")
    state.meetings["lesson"] = moved

    assert state.meeting_by_join_url(lesson.join_url or "") is None
    assert state.meeting_by_join_url(moved.join_url or "") is moved


def test_a_meeting_the_chaos_schedule_removed_is_not_found(
    scenario: Scenario, clock: FakeClock
) -> None:
    """A meeting deleted mid-cycle is gone from join URL and onlineMeeting lookups."""
    state = TenantState(scenario, clock=clock)
    lesson = state.meetings["lesson"]
    state.chaos.removed["lesson"] = []

    assert state.meetings_by_join_url(lesson.join_url or "") == []
    assert state.meeting_by_online_id(lesson.online_meeting_id or "") is None


def test_calls_and_chats_are_found_after_they_change(scenario: Scenario, clock: FakeClock) -> None:
    """A direct call is found by its id, and a chat given a new member is in that member's
    list of chats."""
    state = TenantState(scenario, clock=clock)
    call_id = state.peer_call_id("peer")
    chat_id = state.chat_id("dm")
    assert chat_id is not None
    head = state.identities["head"]

    before = [chat.id for chat in state.chats_of(head.id)]
    chat = state.chats[chat_id]
    state.chats[chat_id] = replace(chat, members=(*chat.members, head))

    session = state.call_session(call_id)
    assert session is not None
    assert session.id == call_id
    assert chat_id not in before
    assert chat_id in [chat.id for chat in state.chats_of(head.id)]
