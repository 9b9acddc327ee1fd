"""``POST /users/{id}/sendMail`` as Graph answers it: 202 with no body, the message kept in the
tenant state; the errors Graph gives for a missing permission, mailbox or recipient."""

from __future__ import annotations

from typing import Any

from remote_guard.fakegraph.server import FakeTenantServer
from tests.fakegraph.conftest import Graph


def _message(*addresses: str, content_type: str = "Text") -> dict[str, Any]:
    return {
        "message": {
            "subject": "remote_guard: a new high-severity finding",
            "body": {"contentType": content_type, "content": "Open the link."},
            "toRecipients": [{"emailAddress": {"address": address}} for address in addresses],
        },
        "saveToSentItems": False,
    }


def test_send_mail_is_accepted_and_kept(server: FakeTenantServer, graph: Graph) -> None:
    sender = server.scenario.person_id("dsl")
    response = graph.post(f"/users/{sender}/sendMail", _message("head@school.example"))
    assert response.status_code == 202
    assert response.content == b""
    [mail] = server.state.sent_mail
    assert (mail.sender_id, mail.to, mail.subject) == (
        sender,
        ("head@school.example",),
        "remote_guard: a new high-severity finding",
    )
    assert (mail.content_type, mail.content, mail.save_to_sent_items) == (
        "text",
        "Open the link.",
        False,
    )


def test_send_mail_as_a_mailbox_named_by_its_upn(server: FakeTenantServer, graph: Graph) -> None:
    upn = server.state.identities["dsl"].upn
    assert upn
    assert graph.post(f"/users/{upn}/sendMail", _message("a@b.example")).status_code == 202
    assert server.state.sent_mail[0].sender_id == server.scenario.person_id("dsl")


def test_send_mail_errors(server: FakeTenantServer, graph: Graph) -> None:
    sender = server.scenario.person_id("dsl")
    no_recipient = graph.post(f"/users/{sender}/sendMail", _message())
    assert no_recipient.status_code == 400
    assert no_recipient.json()["error"]["code"] == "ErrorInvalidRecipients"
    bad_recipient = graph.post(f"/users/{sender}/sendMail", _message("not an address"))
    assert bad_recipient.json()["error"]["code"] == "ErrorInvalidRecipients"
    no_message = graph.post(f"/users/{sender}/sendMail", {"saveToSentItems": False})
    assert no_message.status_code == 400
    unknown = graph.post("/users/nobody@nowhere.example/sendMail", _message("a@b.example"))
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "ErrorInvalidUser")
    assert server.state.sent_mail == []


def test_send_mail_needs_mail_send(server: FakeTenantServer, graph: Graph) -> None:
    server.state.app_permissions.discard("Mail.Send")
    graph.token = graph.new_token()  # the permission is read into the token when it is issued
    sender = server.scenario.person_id("dsl")
    refused = graph.post(f"/users/{sender}/sendMail", _message("a@b.example"))
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "ErrorAccessDenied")
    assert server.state.sent_mail == []
