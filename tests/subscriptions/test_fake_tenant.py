"""The fake tenant's change notifications, as Graph documents them: the subscription API on
v1.0 and beta, the validation handshake (HTTPS only, creation refused when it fails), the
maximum lifetimes, the shape of what is delivered, retries, lifecycle events, the meeting call
events. A small recording endpoint stands in for remote_guard's receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from remote_guard.fakegraph.live import LiveTenant, receiver_for
from remote_guard.fakegraph.server import FakeTenantServer
from remote_guard.subscriptions.hub import ReceiverServer
from tests.subscriptions.conftest import school, wait_for

pytestmark = pytest.mark.e2e

START = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)
STATE = "client-state-for-the-fake-tenant-tests-0123456789"


class ManualClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Endpoint:
    """Answers the handshake (or not) and records what is posted; answers ``statuses`` in turn,
    then 202."""

    echo: bool = True
    statuses: list[int] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle(self, request: Request) -> Response:
        token = request.query_params.get("validationToken")
        if token is not None:
            return PlainTextResponse(token if self.echo else "nope")
        body = await request.json()
        with self.lock:
            self.bodies.append(body)
            status = self.statuses.pop(0) if self.statuses else 202
        return Response(status_code=status)

    def items(self) -> list[dict[str, Any]]:
        with self.lock:
            return [item for body in self.bodies for item in body["value"]]


@dataclass
class Fake:
    server: FakeTenantServer
    live: LiveTenant
    endpoint: Endpoint
    receiver: ReceiverServer
    clock: ManualClock
    token: str

    @property
    def url(self) -> str:
        return self.receiver.url("/hook")

    def call(
        self, method: str, path: str, body: Any = None, *, api: str = "v1.0"
    ) -> requests.Response:
        return requests.request(
            method,
            f"{self.server.base_url}/{api}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            verify=str(self.server.ca_path),
            timeout=15,
        )

    def subscribe(self, resource: str, *, api: str = "v1.0", **changes: Any) -> requests.Response:
        body = {
            "changeType": "created,updated",
            "notificationUrl": self.url,
            "lifecycleNotificationUrl": f"{self.url}/lifecycle",
            "resource": resource,
            "expirationDateTime": (self.clock.now + timedelta(minutes=50)).isoformat(),
            "clientState": STATE,
            **changes,
        }
        return self.call("POST", "/subscriptions", body, api=api)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Fake]:
    scenario = school()
    clock = ManualClock()
    with FakeTenantServer(scenario, state_dir=tmp_path / "tenant", clock=clock) as server:
        live = LiveTenant(server)
        live.notifier.delay_seconds = 0.0
        live.notifier.retry_base_seconds = 0.05
        endpoint = Endpoint()
        receiver = receiver_for(live)
        app = Starlette(
            routes=[
                Route("/hook", endpoint.handle, methods=["POST"]),
                Route("/hook/lifecycle", endpoint.handle, methods=["POST"]),
            ]
        )
        receiver.start(app)
        token = requests.post(
            f"{server.base_url}/{scenario.tenant.id}/oauth2/v2.0/token",
            data={
                "client_id": scenario.app.client_id,
                "client_secret": scenario.app.client_secret,
                "grant_type": "client_credentials",
                "scope": "https://graph.microsoft.com/.default",
            },
            verify=str(server.ca_path),
            timeout=10,
        ).json()["access_token"]
        try:
            yield Fake(server, live, endpoint, receiver, clock, token)
        finally:
            receiver.stop()
            live.close()


def _thread(fake: Fake) -> str:
    thread = fake.server.state.meetings["lesson"].thread_id
    assert thread is not None
    return thread


def test_a_subscription_is_created_after_both_endpoints_answer_the_handshake(fake: Fake) -> None:
    answer = fake.subscribe(f"/chats/{_thread(fake)}/messages")

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["resource"] == f"/chats/{_thread(fake)}/messages"
    assert body["clientState"] == STATE
    assert body["changeType"] == "created,updated"
    assert body["expirationDateTime"].startswith("2026-11-18T10:50:00")
    assert [(v.url, v.ok) for v in fake.live.notifier.validations] == [
        (fake.url, True),
        (f"{fake.url}/lifecycle", True),
    ]
    listed = fake.call("GET", "/subscriptions").json()["value"]
    assert [item["id"] for item in listed] == [body["id"]]


def test_creation_is_refused_when_the_handshake_fails(fake: Fake) -> None:
    fake.endpoint.echo = False

    answer = fake.subscribe("/communications/callRecords")

    assert answer.status_code == 400
    assert "validation request failed" in answer.json()["error"]["message"].lower()
    assert fake.live.subscriptions() == []


def test_notification_urls_must_be_https(fake: Fake) -> None:
    answer = fake.subscribe(
        "/communications/callRecords", notificationUrl=fake.url.replace("https://", "http://")
    )

    assert answer.status_code == 400
    assert "HTTPS" in answer.json()["error"]["message"]
    assert fake.live.notifier.validations == []


@pytest.mark.parametrize(
    ("resource", "minutes", "lifecycle", "answer"),
    [
        ("/communications/callRecords", 4230, True, (201, "")),
        ("/communications/callRecords", 4231, True, (400, "4230 minutes")),
        ("/chats/{thread}/messages", 61, False, (400, "lifecycleNotificationUrl is a required property")),
        ("/chats/{thread}/messages", 61, True, (201, "")),
        ("/users/{teacher}/events", 4231, True, (400, "4230 minutes")),
        ("/communications/callRecords", 0, True, (400, "in the future")),
    ],
)  # fmt: skip
def test_maximum_lifetimes(
    fake: Fake, resource: str, minutes: int, lifecycle: bool, answer: tuple[int, str]
) -> None:
    status, message = answer
    resource = resource.format(
        thread=_thread(fake), teacher=fake.server.state.identities["t.jones"].id
    )
    changes: dict[str, Any] = {
        "expirationDateTime": (fake.clock.now + timedelta(minutes=minutes)).isoformat()
    }
    if not lifecycle:
        changes["lifecycleNotificationUrl"] = None

    created = fake.subscribe(resource, **changes)

    assert created.status_code == status, created.text
    if message:
        assert message in created.json()["error"]["message"]


def test_meeting_call_events_are_beta_only(fake: Fake) -> None:
    resource = (
        f"/communications/onlineMeetings/?$filter=JoinWebUrl eq '{fake.server.join_url('lesson')}'"
    )

    on_v1 = fake.subscribe(resource, changeType="updated")
    on_beta = fake.subscribe(resource, changeType="updated", api="beta")

    assert on_v1.status_code == 400
    assert on_beta.status_code == 201, on_beta.text
    subscription = on_beta.json()["id"]
    assert fake.call("GET", f"/subscriptions/{subscription}", api="beta").status_code == 200
    assert fake.call("DELETE", f"/subscriptions/{subscription}", api="beta").status_code == 204
    assert fake.call("GET", f"/subscriptions/{subscription}", api="beta").status_code == 404


def test_one_subscription_per_app_per_chat(fake: Fake) -> None:
    assert fake.subscribe(f"/chats/{_thread(fake)}/messages").status_code == 201
    again = fake.subscribe(f"/chats/{_thread(fake)}/messages")
    assert again.status_code == 403


def test_a_chat_message_is_delivered_as_graph_shapes_it_and_retried(fake: Fake) -> None:
    """The subscriber answers 500 the first time: Graph delivers the same notification again."""
    subscription = fake.subscribe(f"/chats/{_thread(fake)}/messages").json()["id"]
    fake.endpoint.statuses = [500]

    message_id = fake.live.post("lesson", "p1", "hello")

    wait_for(lambda: len(fake.endpoint.bodies) >= 2, what="the retried delivery")
    first, second = fake.endpoint.bodies[:2]
    assert first == second
    (item,) = first["value"]
    resource = f"chats('{_thread(fake)}')/messages('{message_id}')"
    assert item == {
        "subscriptionId": subscription,
        "subscriptionExpirationDateTime": "2026-11-18T10:50:00.0000000Z",
        "changeType": "created",
        "resource": resource,
        "resourceData": {
            "id": message_id,
            "@odata.type": "#Microsoft.Graph.chatMessage",
            "@odata.id": resource,
        },
        "clientState": STATE,
        "tenantId": fake.server.scenario.tenant.id,
    }
    (delivery,) = fake.live.deliveries()
    assert delivery.statuses == [500, 202]
    # What was there before the subscription is never notified.
    assert len(fake.endpoint.items()) == 2


def test_reauthorization_pauses_delivery_until_renewed(fake: Fake) -> None:
    subscription = fake.subscribe(f"/chats/{_thread(fake)}/messages").json()["id"]
    fake.live.lifecycle(subscription, "reauthorizationRequired")
    wait_for(
        lambda: [i for i in fake.endpoint.items() if i.get("lifecycleEvent")],
        what="the lifecycle notification",
    )
    fake.live.post("lesson", "p1", "lost while paused")
    fake.live.notifier.poke()

    renewed = fake.call(
        "PATCH",
        f"/subscriptions/{subscription}",
        {"expirationDateTime": (fake.clock.now + timedelta(minutes=30)).isoformat()},
    )
    fake.live.post("lesson", "p2", "after renewal")

    assert renewed.status_code == 200
    changes = wait_for(
        lambda: [i for i in fake.endpoint.items() if "changeType" in i],
        what="the notification after renewal",
    )
    assert len(changes) == 1
    assert [i["lifecycleEvent"] for i in fake.endpoint.items() if "lifecycleEvent" in i] == [
        "reauthorizationRequired"
    ]


def test_an_expired_subscription_is_gone(fake: Fake) -> None:
    subscription = fake.subscribe("/communications/callRecords").json()["id"]
    fake.clock.advance(minutes=51)

    assert fake.call("GET", f"/subscriptions/{subscription}").status_code == 404
    patch = fake.call(
        "PATCH",
        f"/subscriptions/{subscription}",
        {"expirationDateTime": (fake.clock.now + timedelta(minutes=30)).isoformat()},
    )
    assert patch.status_code == 404


def test_meeting_call_events_follow_joins_and_leaves(fake: Fake) -> None:
    """CallStarted, then one roster update per moment with the documented PascalCase identity,
    a leave naming the same participant id, and CallEnded when the call ends; then the call
    record appears for a callRecords subscriber."""
    url = fake.server.join_url("lesson")
    fake.subscribe(
        f"/communications/onlineMeetings/?$filter=JoinWebUrl eq '{url}'",
        changeType="updated",
        api="beta",
    )
    fake.subscribe("/communications/callRecords")
    with fake.live.together():
        fake.live.join("lesson", "t.jones")
        fake.live.join("lesson", "p1")
    fake.clock.advance(minutes=1)
    fake.live.leave("lesson", "p1")
    fake.clock.advance(minutes=1)
    fake.live.end_call("lesson")

    items = wait_for(
        lambda: found if len(found := fake.endpoint.items()) >= 5 else None,
        what="the call events and the call record",
    )
    events = [i["resourceData"].get("eventType", i["resource"]) for i in items]
    assert events[:4] == [
        "Microsoft.Communication.CallStarted",
        "Microsoft.Communication.CallRosterUpdate",
        "Microsoft.Communication.CallRosterUpdate",
        "Microsoft.Communication.CallRosterUpdate",
    ]
    assert events[4] == "Microsoft.Communication.CallEnded"
    joined = items[1]["resourceData"]["activeParticipants@joined"]
    teacher = fake.server.state.identities["t.jones"]
    assert {
        "User": {"Id": teacher.id, "DisplayName": "Mrs Jones", "TenantId": teacher.tenant_id}
    } in [p["identity"] for p in joined]
    pupil_entry = next(p for p in joined if p["identity"]["User"]["DisplayName"] == "Pupil 1")
    left = items[2]["resourceData"]["activeParticipants@exited"]
    assert left == [pupil_entry]
    assert items[0]["resource"] == f"communications/onlineMeetings?$filter=joinWebUrl+eq+'{url}'"
    record = wait_for(
        lambda: next((i for i in fake.endpoint.items() if "callRecords/" in i["resource"]), None),
        what="the call record notification",
    )
    assert record["resourceData"]["@odata.type"] == "#microsoft.graph.callrecord"
