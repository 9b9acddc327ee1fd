"""The Graph client's paging, retry and batching policy, faked at the HTTP session seam."""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import Any

import pytest
import requests

from remote_guard.graph.client import BatchRequest, GraphClient, endpoint_name, envelopes
from remote_guard.graph.errors import GraphError, GraphNotFoundError, GraphPermissionError
from remote_guard.settings import TenantSettings

BASE = "https://graph.example.test/v1.0"


class FakeTokens:
    def __init__(self) -> None:
        self.calls = 0
        self.invalidated = 0
        self.tokens_issued = 0

    def token(self) -> str:
        self.calls += 1
        return f"token-{self.invalidated}"

    def invalidate(self) -> None:
        self.invalidated += 1


def _response(
    status: int, body: Any = None, headers: dict[str, str] | None = None
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = b"" if body is None else json.dumps(body).encode()
    response.headers.update(headers or {})
    return response


class ScriptedSession(requests.Session):
    """Answers requests from a script and remembers what was sent."""

    def __init__(self, answers: list[requests.Response | Exception]) -> None:
        super().__init__()
        self.answers = deque(answers)
        self.sent: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append({"method": method, "url": url, **kwargs})
        answer = self.answers.popleft()
        if isinstance(answer, Exception):
            raise answer
        return answer


def _client(
    answers: list[requests.Response | Exception], **tenant: Any
) -> tuple[GraphClient, ScriptedSession, list[float], FakeTokens]:
    session = ScriptedSession(answers)
    sleeps: list[float] = []
    tokens = FakeTokens()
    settings = TenantSettings(
        tenant_id="t", client_id="c", client_secret="s", graph_base_url=BASE, **tenant
    )
    client = GraphClient(settings, tokens=tokens, session=session, sleep=sleeps.append)  # type: ignore[arg-type]
    return client, session, sleeps, tokens


def test_paging_follows_whole_next_link_including_empty_pages() -> None:
    """Every page is read, empty ones too, by following @odata.nextLink as given."""
    client, session, _, _ = _client(
        [
            _response(
                200, {"value": [{"id": "1"}], "@odata.nextLink": f"{BASE}/users?$skiptoken=X1"}
            ),
            _response(200, {"value": [], "@odata.nextLink": f"{BASE}/users?$skiptoken=X2"}),
            _response(200, {"value": [{"id": "2"}, {"id": "3"}]}),
        ]
    )
    items = [item["id"] for item in client.iter_items("/users", params={"$top": "1"})]
    assert items == ["1", "2", "3"]
    assert [sent["url"] for sent in session.sent] == [
        f"{BASE}/users",
        f"{BASE}/users?$skiptoken=X1",
        f"{BASE}/users?$skiptoken=X2",
    ]
    assert session.sent[1]["params"] is None


def test_next_link_to_another_host_is_refused() -> None:
    """A hostile nextLink never receives the bearer token."""
    client, session, _, _ = _client(
        [_response(200, {"value": [], "@odata.nextLink": "https://evil.example/steal"})]
    )
    with pytest.raises(GraphError, match="another host"):
        list(client.iter_items("/users"))
    assert len(session.sent) == 1


def test_429_waits_for_decimal_retry_after_then_succeeds() -> None:
    """A 429 is retried after exactly the Retry-After seconds Graph gave."""
    client, _, sleeps, _ = _client(
        [
            _response(
                429,
                {"error": {"code": "TooManyRequests", "message": "slow down"}},
                {"Retry-After": "2.128"},
            ),
            _response(200, {"id": "x"}),
        ]
    )
    assert client.get("/users/x") == {"id": "x"}
    assert sleeps == [2.128]
    assert client.stats.throttled["/users/{id}"] == 1
    assert client.stats.requests["/users/{id}"] == 2


def test_retry_after_is_capped() -> None:
    """An absurd Retry-After is capped at max_retry_wait_seconds."""
    client, _, sleeps, _ = _client(
        [_response(503, None, {"Retry-After": "86400"}), _response(200, {"id": "x"})],
        max_retry_wait_seconds=5,
    )
    client.get("/users/x")
    assert sleeps == [5]


def test_timeouts_are_retried_and_give_a_retryable_error_when_they_persist() -> None:
    """Timeouts are retried up to max_retries, then raise a retryable GraphError."""
    client, session, sleeps, _ = _client([requests.Timeout()] * 3, max_retries=2)
    with pytest.raises(GraphError) as caught:
        client.get("/users/x")
    assert caught.value.retryable is True
    assert len(session.sent) == 3
    assert len(sleeps) == 2
    assert all(sent["timeout"] == 30.0 for sent in session.sent)


@pytest.mark.parametrize(
    ("status", "kind"), [(403, GraphPermissionError), (404, GraphNotFoundError), (400, GraphError)]
)
def test_permanent_errors_are_not_retried(status: int, kind: type[GraphError]) -> None:
    """4xx other than 429 fail at once with the typed error and Graph's code."""
    client, session, sleeps, _ = _client(
        [
            _response(
                status,
                {
                    "error": {
                        "code": "Forbidden",
                        "message": "No Application Access Policy found for this app.",
                    }
                },
            )
        ]
    )
    with pytest.raises(kind) as caught:
        client.get("/users/x/onlineMeetings")
    assert caught.value.retryable is False
    assert caught.value.code == "Forbidden"
    assert caught.value.status == status
    assert len(session.sent) == 1
    assert sleeps == []


def test_401_refreshes_the_token_once() -> None:
    """A 401 drops the cached token and retries once with a new one."""
    client, session, _, tokens = _client(
        [
            _response(401, {"error": {"code": "InvalidAuthenticationToken"}}),
            _response(200, {"ok": True}),
        ]
    )
    assert client.get("/users") == {"ok": True}
    assert tokens.invalidated == 1
    assert session.sent[0]["headers"]["Authorization"] == "Bearer token-0"
    assert session.sent[1]["headers"]["Authorization"] == "Bearer token-1"


def test_batch_splits_into_twenties_and_retries_throttled_items_after_longest_retry_after() -> None:
    """25 requests go as 20 + 5; a throttled item is resent after its Retry-After."""
    first = {
        "responses": [
            {"id": str(i), "status": 200, "headers": {}, "body": {"n": i}}
            for i in range(20)
            if i != 3
        ]
        + [
            {
                "id": "3",
                "status": 429,
                "headers": {"Retry-After": "1.5"},
                "body": {"error": {"code": "TooManyRequests"}},
            }
        ]
    }
    second = {
        "responses": [
            {"id": str(i), "status": 200, "headers": {}, "body": {"n": i}} for i in range(20, 25)
        ]
    }
    third = {"responses": [{"id": "3", "status": 200, "headers": {}, "body": {"n": 3}}]}
    client, session, sleeps, _ = _client(
        [_response(200, first), _response(200, second), _response(200, third)]
    )
    results = client.batch([BatchRequest(id=str(i), url=f"/users/{i}") for i in range(25)])
    assert sorted(int(k) for k in results) == list(range(25))
    assert all(response.status == 200 for response in results.values())
    assert [len(sent["json"]["requests"]) for sent in session.sent] == [20, 5, 1]
    assert sleeps == [1.5]


def test_endpoint_name_folds_ids() -> None:
    """Request counts group by endpoint, not by object id."""
    assert endpoint_name(f"{BASE}/users/ab-12/onlineMeetings/MSo0/attendanceReports?$top=5") == (
        "/users/{id}/onlineMeetings/{id}/attendanceReports"
    )
    assert endpoint_name("/communications/callRecords") == "/communications/callRecords"


# --- batching, threads and request counts ---------------------------------------------------------


def test_batch_urls_are_relative_to_the_graph_base() -> None:
    """A path with parameters, and a next link Graph gave, both become the relative URL a batch
    item needs; spaces in a $filter are %20, not '+'."""
    client, _, _, _ = _client([])
    assert client.batch_url("/users/u1/onlineMeetings", {"$filter": "JoinWebUrl eq 'a b'"}) == (
        "/users/u1/onlineMeetings?%24filter=JoinWebUrl%20eq%20%27a%20b%27"
    )
    assert client.batch_url(f"{BASE}/users/u1/calendarView/delta?$deltatoken=abc") == (
        "/users/u1/calendarView/delta?$deltatoken=abc"
    )


@pytest.mark.parametrize(
    "link", ["https://evil.example/v1.0/users", "https://graph.example.test/beta/users"]
)
def test_a_link_elsewhere_never_goes_in_a_batch(link: str) -> None:
    client, _, _, _ = _client([])
    with pytest.raises(GraphError):
        client.batch_url(link)


def test_an_item_refused_for_its_token_is_sent_again_with_a_new_one() -> None:
    """A 401 inside a batch drops the cached token once and the item goes again."""
    client, session, _, tokens = _client(
        [
            _response(
                200,
                {
                    "responses": [
                        {"id": "1", "status": 401, "headers": {}, "body": {"error": {}}},
                        {"id": "2", "status": 200, "headers": {}, "body": {"n": 2}},
                    ]
                },
            ),
            _response(200, {"responses": [{"id": "1", "status": 200, "body": {"n": 1}}]}),
        ]
    )
    results = client.batch([BatchRequest(id="1", url="/users/a"), BatchRequest(id="2", url="/b")])
    assert {key: value.body for key, value in results.items()} == {"1": {"n": 1}, "2": {"n": 2}}
    assert tokens.invalidated == 1
    assert session.sent[1]["headers"]["Authorization"] == "Bearer token-1"


def test_batch_items_are_counted_by_their_own_endpoint() -> None:
    """One envelope is one HTTP request; Graph counts its three items, by endpoint."""
    client, _, _, _ = _client(
        [
            _response(
                200,
                {"responses": [{"id": str(i), "status": 200, "body": {}} for i in range(3)]},
            )
        ]
    )
    client.batch(
        [
            BatchRequest(id="0", url="/users/a/calendarView/delta"),
            BatchRequest(id="1", url="/users/b/calendarView/delta"),
            BatchRequest(id="2", url="/communications/callRecords"),
        ]
    )
    assert client.stats.total == 1
    assert client.stats.graph_requests == 3
    assert client.stats.batched == {
        "/users/{id}/calendarView/delta": 2,
        "/communications/callRecords": 1,
    }


def test_envelopes_keep_each_kind_within_its_rate_limit() -> None:
    """45 reads of other users' events fill envelopes of 20; six reads of one team's channel
    posts (Teams allows four a second on one team) are spread so no envelope holds more than
    four of them."""
    team = [
        BatchRequest(id=f"t{i}", url=f"/teams/T1/channels/C1/messages/{i}/replies")
        for i in range(6)
    ]
    users = [BatchRequest(id=f"u{i}", url=f"/users/u{i}/calendarView/delta") for i in range(45)]
    chunks = envelopes(team + users)
    assert all(len(chunk) <= 20 for chunk in chunks)
    assert [sum(item.id.startswith("t") for item in chunk) for chunk in chunks] == [4, 2, 0]
    assert sorted(item.id for chunk in chunks for item in chunk) == sorted(
        item.id for item in team + users
    )


def test_each_thread_has_its_own_http_session() -> None:
    """requests does not promise a Session is thread-safe: the client keeps one per thread."""
    settings = TenantSettings(tenant_id="t", client_id="c", client_secret="s", graph_base_url=BASE)
    client = GraphClient(settings, tokens=FakeTokens())  # type: ignore[arg-type]
    seen: list[requests.Session] = []
    worker = threading.Thread(target=lambda: seen.append(client._http()))
    worker.start()
    worker.join()
    assert client._http() is client._http()
    assert seen[0] is not client._http()
