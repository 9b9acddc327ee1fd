"""The receiver: Graph's validation handshake, the clientState check, 202 at once, and bodies
that are not notifications. The worker is replaced by a list (the receiver's one seam)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from remote_guard.subscriptions.receiver import MAX_BODY_BYTES, Received, Receiver, receiver_app

SECRET = "s3cret-client-state-0123456789abcdef-0123456789"
PATH = "/graph-notifications"
NOW = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _every_level_logged() -> Any:
    """Another test may have configured logging at ``warning``, which would filter the
    receiver's lines before capture_logs sees them; log every level here, then put it back."""
    before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(0))
    yield
    structlog.configure(**before)


class Sink:
    def __init__(self, room: bool = True) -> None:
        self.items: list[Received] = []
        self.room = room

    def __call__(self, received: Received) -> bool:
        if not self.room:
            return False
        self.items.append(received)
        return True


def _client(sink: Sink) -> tuple[TestClient, Receiver]:
    receiver = Receiver(client_state=SECRET, sink=sink, clock=lambda: NOW)
    return TestClient(receiver_app(receiver, PATH), base_url="https://receiver.test"), receiver


def _item(**changes: Any) -> dict[str, Any]:
    item = {
        "subscriptionId": "2b6d5b2c-2a36-4a3f-9d3f-2a3c4b5d6e7f",
        "subscriptionExpirationDateTime": "2026-11-18T11:00:00.0000000Z",
        "changeType": "created",
        "resource": "chats('19:meeting_x@thread.v2')/messages('1763460000000')",
        "resourceData": {
            "id": "1763460000000",
            "@odata.type": "#Microsoft.Graph.chatMessage",
            "@odata.id": "chats('19:meeting_x@thread.v2')/messages('1763460000000')",
        },
        "clientState": SECRET,
        "tenantId": "7d9f3e2a-1b4c-4e8d-9a6f-5c2b1e0d4a37",
    }
    item.update(changes)
    return item


@pytest.mark.parametrize("path", [PATH, f"{PATH}/lifecycle"])
def test_validation_token_is_echoed_decoded_as_plain_text(path: str) -> None:
    """Graph's handshake gets 200 and the URL-decoded token as text/plain, on both endpoints."""
    sink = Sink()
    client, _ = _client(sink)
    token = "Validation: Testing client application reachability & more+plus"

    answer = client.post(path, params={"validationToken": token})

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.text == token
    assert sink.items == []


def test_a_notification_is_accepted_with_202_and_queued() -> None:
    """A genuine notification is answered 202 and handed to the worker untouched."""
    sink = Sink()
    client, receiver = _client(sink)

    answer = client.post(PATH, json={"value": [_item()]})

    assert answer.status_code == 202
    assert answer.content == b""
    assert [(r.kind, r.trusted, r.item["resource"]) for r in sink.items] == [
        ("change", True, _item()["resource"])
    ]
    assert sink.items[0].received_at == NOW
    assert receiver.stats.get("accepted") == 1


@pytest.mark.parametrize("client_state", ["wrong", SECRET[:-1], SECRET + "x", None, 42])
def test_client_state_mismatch_is_not_trusted_counted_and_never_logged(client_state: Any) -> None:
    """A wrong, missing or malformed clientState: answered 202 (nothing to retry), passed on
    only to be recorded as untrusted, counted, and the value never reaches the log."""
    sink = Sink()
    client, receiver = _client(sink)

    with capture_logs() as logs:
        answer = client.post(PATH, json={"value": [_item(clientState=client_state)]})

    assert answer.status_code == 202
    assert [r.trusted for r in sink.items] == [False]
    assert receiver.stats.get("client_state_mismatch") == 1
    assert receiver.stats.get("accepted") == 0
    assert [entry["event"] for entry in logs] == ["notifications.client_state_mismatch"]
    assert "wrong" not in json.dumps(logs)
    assert SECRET[:-1] not in json.dumps(logs)


def test_lifecycle_notification_is_told_apart_by_its_event() -> None:
    """An item with lifecycleEvent is a lifecycle notification, wherever it was posted."""
    sink = Sink()
    client, _ = _client(sink)
    lifecycle = {
        "subscriptionId": "2b6d5b2c-2a36-4a3f-9d3f-2a3c4b5d6e7f",
        "subscriptionExpirationDateTime": "2026-11-18T11:00:00.0000000Z",
        "tenantId": "7d9f3e2a-1b4c-4e8d-9a6f-5c2b1e0d4a37",
        "clientState": SECRET,
        "lifecycleEvent": "subscriptionRemoved",
    }

    client.post(f"{PATH}/lifecycle", json={"value": [lifecycle]})
    client.post(PATH, json={"value": [lifecycle]})

    assert [(r.kind, r.trusted) for r in sink.items] == [("lifecycle", True), ("lifecycle", True)]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"{}",
        b'{"value": "x"}',
        json.dumps({"value": [_item()] * 1001}).encode(),
    ],
)
def test_a_body_that_is_not_a_notification_collection_gets_400(body: bytes) -> None:
    sink = Sink()
    client, receiver = _client(sink)

    answer = client.post(PATH, content=body, headers={"content-type": "application/json"})

    assert answer.status_code == 400
    assert sink.items == []
    assert receiver.stats.get("malformed") == 1


def test_items_of_the_wrong_shape_are_skipped_and_the_rest_taken() -> None:
    sink = Sink()
    client, receiver = _client(sink)

    answer = client.post(
        PATH, json={"value": ["x", 3, None, {"no": "id"}, {"subscriptionId": 7}, _item()]}
    )

    assert answer.status_code == 202
    assert len(sink.items) == 1
    assert receiver.stats.get("malformed_items") == 5


def test_an_oversized_body_is_refused_before_it_is_read() -> None:
    sink = Sink()
    client, _ = _client(sink)

    answer = client.post(PATH, content=b"x" * (MAX_BODY_BYTES + 1))

    assert answer.status_code == 413
    assert sink.items == []


def test_a_full_queue_asks_graph_to_deliver_again() -> None:
    """No room in the worker's queue: 503, so Graph retries the genuine notification later."""
    client, receiver = _client(Sink(room=False))

    assert client.post(PATH, json={"value": [_item()]}).status_code == 503
    assert receiver.stats.get("queue_full") == 1


def test_a_full_queue_does_not_make_graph_retry_forged_posts() -> None:
    client, _ = _client(Sink(room=False))

    assert client.post(PATH, json={"value": [_item(clientState="forged")]}).status_code == 202


def test_only_post_is_served() -> None:
    client, _ = _client(Sink())

    assert client.get(PATH).status_code == 405
    assert client.post("/elsewhere", json={"value": []}).status_code == 404
