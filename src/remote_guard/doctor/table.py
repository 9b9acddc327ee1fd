"""The permissions table of docs/setup-entra.md, written from ``graph.permissions.GRAPH_CALLS``.

``python -m remote_guard.doctor.table`` prints it; tests/doctor/test_setup_guide.py checks the
guide's copy against the code, so the guide cannot ask for less or more than the code uses.
"""

from __future__ import annotations

import sys

from remote_guard.doctor.probes import PROTECTED_PERMISSIONS, needs_access_policy
from remote_guard.graph.permissions import GRAPH_CALLS, least_permissions

# The feature each permission serves, in a technician's words (the purposes in GRAPH_CALLS say
# which call needs it).
FEATURES: dict[str, str] = {
    "User.Read.All": "Who is who: people outside the configured groups (guests)",
    "GroupMember.Read.All": "Who is who: staff, pupils, SLT, DSLs; class teams' teachers",
    "Calendars.Read": "Finding sessions on staff calendars",
    "Calendars.ReadWrite": "Web app: SLT drop-ins written into the SLT member's own calendar",
    "OnlineMeetings.Read.All": "Meeting options: lobby, chat, presenters",
    "OnlineMeetingArtifact.Read.All": "Attendance: who joined, and when",
    "OnlineMeetingRecording.Read.All": "Recordings",
    "OnlineMeetingTranscript.Read.All": "Transcripts",
    "CallRecords.Read.All": "Calls that took place, incl. Meet now and one-to-one calls",
    "Chat.ReadBasic.All": "Staff-pupil chats outside meetings (who is in them)",
    "Chat.Read.All": "Meeting chats and staff-pupil chats: who posted, and when",
    "ChannelMessage.Read.All": "Channel meetings' conversations: who posted, and when",
    "Team.ReadBasic.All": "Recognising channel meetings (teams)",
    "Channel.ReadBasic.All": "Recognising channel meetings (channels)",
    "Mail.Send": "E-mail alerts to the DSL, sent as the service mailbox",
}


def permissions_table() -> str:
    """The Markdown table: one row per application permission remote_guard needs."""
    lines = [
        "| Application permission | Feature | Graph calls | Teams access policy | Protected API |",
        "| --- | --- | --- | --- | --- |",
    ]
    for permission in least_permissions():
        calls = "<br>".join(
            f"`{call.method} {call.endpoint}`"
            for call in GRAPH_CALLS
            if call.permission == permission
        )
        lines.append(
            f"| {permission} | {FEATURES.get(permission, '(see graph/permissions.py)')} | "
            f"{calls} | {'yes' if needs_access_policy(permission) else 'no'} | "
            f"{'yes' if permission in PROTECTED_PERMISSIONS else 'no'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(permissions_table())
