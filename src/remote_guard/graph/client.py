"""The one seam through which remote_guard speaks HTTP to Microsoft Graph.

One token provider per tenant and one ``requests.Session`` per thread (the client is shared by
the collector's worker threads); a timeout on every call; one paging generator; retries only for
429, 5xx and timeouts, honouring ``Retry-After``; one error type.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

import requests
import structlog

from remote_guard.graph import pacing
from remote_guard.graph.auth import TokenProvider
from remote_guard.graph.errors import (
    GraphAuthError,
    GraphError,
    GraphNotFoundError,
    GraphPermissionError,
    GraphSyncStateError,
)
from remote_guard.settings import TenantSettings

log = structlog.get_logger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_BATCH = 20  # Graph's documented limit for one $batch request
PREFER_UNKNOWN_ENUMS = "include-unknown-enum-members"

# Path segments that name a collection or function rather than an object; everything else in a
# path is an id, folded into "{id}" so request counts group by endpoint, not by object.
_LITERAL_SEGMENTS = frozenset(
    {
        "v1.0",
        "beta",
        "users",
        "groups",
        "transitiveMembers",
        "owners",
        "members",
        "calendarView",
        "delta",
        "events",
        "onlineMeetings",
        "attendanceReports",
        "attendanceRecords",
        "recordings",
        "transcripts",
        "communications",
        "callRecords",
        "participants_v2",
        "sessions",
        "chats",
        "messages",
        "replies",
        "teams",
        "channels",
        "subscriptions",
        "sendMail",
        "$batch",
        "education",
    }
)
_SKIP_ERROR_DETAIL = re.compile(r"[\r\n]+")
# Failures of the connection rather than answers from Graph, all worth retrying: a timeout, a
# refused or reset connection, and an answer cut off part-way through its body (requests raises
# ChunkedEncodingError for that, which is not a ConnectionError).
_TRANSPORT_ERRORS = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


def endpoint_name(path_or_url: str) -> str:
    """Fold ids out of a Graph path: ``/users/ab12/calendarView`` -> ``/users/{id}/calendarView``."""
    path = urlsplit(path_or_url).path if "://" in path_or_url else path_or_url.split("?", 1)[0]
    segments = []
    for segment in path.strip("/").split("/"):
        if segment in _LITERAL_SEGMENTS:
            segments.append(segment)
        elif segment:
            segments.append("{id}")
    if segments and segments[0] == "v1.0":
        segments = segments[1:]
    return "/" + "/".join(segments)


@dataclass
class RequestStats:
    """Counts of what the client sent, for logs, benchmarks and the closing report of a poll.

    ``requests`` counts HTTP requests (a ``$batch`` envelope is one, under ``/$batch``);
    ``batched`` counts the requests inside envelopes by their own endpoint, as Graph counts them
    against its throttling limits. Updated under the client's lock.
    """

    requests: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)
    batched: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    batch_items: int = 0

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    @property
    def graph_requests(self) -> int:
        """Requests as Graph counts them: every request on its own or inside a batch."""
        return self.total - self.requests["/$batch"] + self.batch_items

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.total,
            "by_endpoint": dict(sorted(self.requests.items())),
            "throttled": sum(self.throttled.values()),
            "retries": self.retries,
            "batch_items": self.batch_items,
            "batched_by_endpoint": dict(sorted(self.batched.items())),
        }


class GraphReads(Protocol):
    """What reading code needs of Graph: :class:`GraphClient`, or a reader in front of it that
    serves some answers from an earlier ``$batch``."""

    def get(
        self,
        path_or_url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]: ...

    def iter_items(
        self,
        path_or_url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]: ...


@dataclass(frozen=True)
class BatchRequest:
    """One request inside a ``$batch``; ``url`` is relative to the Graph base (``/users/...``)."""

    id: str
    url: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass(frozen=True)
class BatchResponse:
    id: str
    status: int
    headers: Mapping[str, str]
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        # Graph documents decimal seconds ("2.128").
        return max(0.0, float(value))
    except ValueError:
        return None


def _error_detail(body: Any) -> tuple[str | None, str]:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            message = error.get("message")
            return (
                str(code) if code is not None else None,
                _SKIP_ERROR_DETAIL.sub(" ", str(message or ""))[:500],
            )
    return None, ""


def error_for(
    status: int, body: Any, *, endpoint: str, request_id: str | None = None
) -> GraphError:
    """The typed error for a non-2xx Graph answer."""
    code, message = _error_detail(body)
    text = message or f"HTTP {status}"
    kind: type[GraphError] = GraphError
    if status == 403:
        kind = GraphPermissionError
    elif status == 404:
        kind = GraphNotFoundError
    elif status == 410 or (code or "").lower() in {"syncstatenotfound", "resyncrequired"}:
        kind = GraphSyncStateError
    return kind(
        text,
        status=status,
        code=code,
        endpoint=endpoint,
        retryable=status in RETRYABLE_STATUSES,
        request_id=request_id,
    )


class GraphClient:
    """A Graph v1.0 client for one tenant.

    ``sleep`` and ``monotonic`` are injectable so tests of the retry policy need not wait.
    """

    def __init__(
        self,
        tenant: TenantSettings,
        *,
        tokens: TokenProvider | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        pacer: pacing.Pacer | None = None,
    ) -> None:
        self._tenant = tenant
        self._base = tenant.graph_base_url
        self._base_parts = urlsplit(self._base)
        self.tokens = tokens or TokenProvider(tenant)
        # requests does not promise a Session is safe to share between threads: each thread gets
        # its own (connection pools included), unless one was passed in (tests replaying bodies).
        self._given_session = session
        self._local = threading.local()
        self._verify: bool | str = str(tenant.ca_bundle) if tenant.ca_bundle is not None else True
        self._sleep = sleep
        self._lock = threading.Lock()
        self.stats = RequestStats()
        # Waits before a request would go over one of Graph's published rate limits.
        self.pacer = pacer or pacing.Pacer()

    # --- low level ----------------------------------------------------------------------------

    def _http(self) -> requests.Session:
        if self._given_session is not None:
            return self._given_session
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def batch_url(self, path_or_url: str, params: Mapping[str, str] | None = None) -> str:
        """The URL of a ``$batch`` item for a request: relative to the Graph base, as Graph
        requires (a next or delta link is cut down to its path and query).

        Raises:
            GraphError: a link points at another host (its token must not go there) or outside
                the Graph base (another API version).
        """
        url = self._url(path_or_url)
        if not url.startswith(self._base):
            raise GraphError(
                f"a link outside {self._base} cannot go in a batch", endpoint=endpoint_name(url)
            )
        relative = url[len(self._base) :]
        if params:
            # Spaces as %20, not "+": Graph reads $filter values literally.
            query = urlencode(dict(params), quote_via=quote)
            relative += ("&" if "?" in relative else "?") + query
        return relative if relative.startswith("/") else "/" + relative

    def _url(self, path_or_url: str) -> str:
        if "://" not in path_or_url:
            return self._base + ("" if path_or_url.startswith("/") else "/") + path_or_url
        parts = urlsplit(path_or_url)
        # A next/delta link comes from the payload; never send our token to another host.
        if (parts.scheme, parts.netloc) != (self._base_parts.scheme, self._base_parts.netloc):
            raise GraphError(
                f"refusing to follow a link to another host: {parts.scheme}://{parts.netloc}",
                endpoint=endpoint_name(path_or_url),
            )
        return path_or_url

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._tenant.max_retry_wait_seconds)
        base: float = min(0.5 * (2**attempt), self._tenant.max_retry_wait_seconds)
        return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not security

    def _token(self, attempt: int) -> str | None:
        """An access token; or None, after waiting, when the identity platform was unreachable or
        busy and the retry budget allows another try (it is retried like Graph itself).

        Raises:
            GraphAuthError: the credential was refused (not retryable), or retries ran out.
        """
        try:
            return self.tokens.token()
        except GraphAuthError as exc:
            if not exc.retryable or attempt >= self._tenant.max_retries:
                raise
        wait = self._backoff(attempt, None)
        with self._lock:
            self.stats.retries += 1
        log.info("graph.token_retry", attempt=attempt + 1, wait_seconds=round(wait, 3))
        self._sleep(wait)
        return None

    def request(  # noqa: PLR0915 (one retry loop read top to bottom: token, send, classify, wait)
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        paced: bool = True,
    ) -> Any:
        """Send one request, retrying what can be retried, and return the decoded JSON body.

        ``paced``: wait, before each try, until it fits under Graph's rate limits (a ``$batch``
        envelope is paced with its items instead).

        Raises:
            GraphError: the call failed for good (a subclass says why), or retries ran out.
            GraphAuthError: no token could be obtained.
        """
        url = self._url(path_or_url)
        endpoint = endpoint_name(url)
        refreshed_token = False
        attempt = 0
        while True:
            token = self._token(attempt)
            if token is None:
                attempt += 1
                continue
            sent_headers = {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                **(headers or {}),
            }
            with self._lock:
                self.stats.requests[endpoint] += 1
            started = time.monotonic()
            try:
                with self.pacer.paced([(method, url)] if paced else []):
                    response = self._http().request(
                        method,
                        url,
                        params=params,
                        json=json_body,
                        headers=sent_headers,
                        timeout=self._tenant.timeout_seconds,
                        verify=self._verify,
                    )
            except _TRANSPORT_ERRORS as exc:
                error: GraphError = GraphError(
                    f"{type(exc).__name__} talking to Graph",
                    endpoint=endpoint,
                    retryable=True,
                )
                retry_after = None
            else:
                elapsed_ms = round((time.monotonic() - started) * 1000, 1)
                request_id = response.headers.get("request-id")
                log.debug(
                    "graph.request",
                    method=method,
                    endpoint=endpoint,
                    status=response.status_code,
                    ms=elapsed_ms,
                )
                if 200 <= response.status_code < 300:
                    if not response.content:
                        return None
                    try:
                        return response.json()
                    except ValueError as exc:
                        # A 2xx with a body that is not JSON is a fault on Graph's side; retry.
                        error = GraphError(
                            "Graph answered with a body that is not JSON",
                            status=response.status_code,
                            endpoint=endpoint,
                            retryable=True,
                            request_id=request_id,
                        )
                        error.__cause__ = exc
                        retry_after = None
                else:
                    try:
                        body = response.json()
                    except ValueError:
                        body = None
                    error = error_for(
                        response.status_code, body, endpoint=endpoint, request_id=request_id
                    )
                    retry_after = _retry_after_seconds(response.headers)
                    if response.status_code == 429:
                        with self._lock:
                            self.stats.throttled[endpoint] += 1
                    if response.status_code == 401 and not refreshed_token:
                        # The token may have expired between the cache check and the call.
                        self.tokens.invalidate()
                        refreshed_token = True
                        continue
            if not error.retryable or attempt >= self._tenant.max_retries:
                raise error
            wait = self._backoff(attempt, retry_after)
            attempt += 1
            with self._lock:
                self.stats.retries += 1
            log.info(
                "graph.retry",
                endpoint=endpoint,
                status=error.status,
                attempt=attempt,
                wait_seconds=round(wait, 3),
            )
            self._sleep(wait)

    def get(
        self,
        path_or_url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """GET one resource and return its JSON object.

        Raises:
            GraphError: as :meth:`request`, or the body was not a JSON object.
        """
        body = self.request("GET", path_or_url, params=params, headers=headers)
        if not isinstance(body, dict):
            raise GraphError(
                "Graph answered with something other than a JSON object",
                endpoint=endpoint_name(path_or_url),
            )
        return body

    def post(
        self,
        path: str,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """POST a JSON body and return the decoded answer.

        Raises:
            GraphError: as :meth:`request`.
        """
        return self.request(
            "POST",
            path,
            json_body=body,
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    # --- paging -------------------------------------------------------------------------------

    def iter_pages(
        self,
        path_or_url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        max_pages: int = 10_000,
    ) -> Iterator[dict[str, Any]]:
        """Yield each page of a collection, following ``@odata.nextLink`` to the end.

        The whole link is followed as given (never rebuilt from ``$skiptoken``). A page may be
        empty. The last page of a delta query carries ``@odata.deltaLink``.

        Raises:
            GraphError: a page could not be read; pages already yielded stay valid, but the
                caller must treat the collection as incomplete.
        """
        return follow_pages(
            self.get, path_or_url, params=params, headers=headers, max_pages=max_pages
        )

    def iter_items(
        self,
        path_or_url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield the items of every page of a collection.

        Raises:
            GraphError: as :meth:`iter_pages`; an item that is not an object is an error too.
        """
        return page_items(self.iter_pages(path_or_url, params=params, headers=headers), path_or_url)

    # --- batching -----------------------------------------------------------------------------

    def batch(self, requests_: list[BatchRequest]) -> dict[str, BatchResponse]:
        """Send requests in ``$batch`` envelopes of at most 20, retrying throttled items.

        Items answered 429/5xx are sent again (in a new envelope) after the longest
        ``Retry-After`` among them, up to the client's retry limit; what still fails is returned
        with its status for the caller to record. Graph's SDKs do not retry batch items, so this
        is done here.

        Raises:
            GraphError: an envelope itself failed for good.
        """
        ids = [item.id for item in requests_]
        if len(set(ids)) != len(ids):
            raise ValueError("batch request ids must be unique")
        results: dict[str, BatchResponse] = {}
        pending = list(requests_)
        attempt = 0
        refreshed_token = False
        while pending:
            retry: list[BatchRequest] = []
            longest_wait: float | None = None
            for chunk in envelopes(pending):
                answer = self._send_envelope(chunk)
                by_id = {item.id: item for item in chunk}
                for response in answer:
                    if response.id not in by_id:
                        continue
                    request = by_id.pop(response.id)
                    if response.status == 401 and not refreshed_token:
                        # As for a single request: the token may have expired on the way.
                        self.tokens.invalidate()
                        refreshed_token = True
                        retry.append(request)
                    elif (
                        response.status in RETRYABLE_STATUSES and attempt < self._tenant.max_retries
                    ):
                        if response.status == 429:
                            with self._lock:
                                self.stats.throttled[endpoint_name(request.url)] += 1
                        retry.append(request)
                        wait = _retry_after_seconds(response.headers)
                        if wait is not None:
                            longest_wait = max(longest_wait or 0.0, wait)
                    else:
                        results[response.id] = response
                # An item the envelope did not answer is treated like a transient failure.
                for request in by_id.values():
                    if attempt < self._tenant.max_retries:
                        retry.append(request)
                    else:
                        results[request.id] = BatchResponse(request.id, 599, {}, None)
            if retry:
                delay = self._backoff(attempt, longest_wait)
                attempt += 1
                with self._lock:
                    self.stats.retries += 1
                log.info("graph.batch_retry", items=len(retry), wait_seconds=round(delay, 3))
                self._sleep(delay)
            pending = retry
        return results

    def _send_envelope(self, chunk: list[BatchRequest]) -> list[BatchResponse]:
        """POST one ``$batch`` envelope (paced, counted) and return its item answers.

        Raises:
            GraphError: the envelope itself failed for good, or its answer is not a batch answer.
        """
        envelope = {
            "requests": [
                {
                    "id": item.id,
                    "method": item.method,
                    "url": item.url,
                    **({"headers": dict(item.headers)} if item.headers else {}),
                    **({"body": item.body} if item.body is not None else {}),
                }
                for item in chunk
            ]
        }
        with self._lock:
            self.stats.batch_items += len(chunk)
            self.stats.batched.update(endpoint_name(item.url) for item in chunk)
        with self.pacer.paced([("POST", "/$batch"), *((i.method, i.url) for i in chunk)]):
            answer = self.request(
                "POST",
                "/$batch",
                json_body=envelope,
                headers={"Content-Type": "application/json"},
                paced=False,
            )
        responses = answer.get("responses") if isinstance(answer, dict) else None
        if not isinstance(responses, list):
            raise GraphError("a $batch answer has no 'responses' list", endpoint="/$batch")
        return [response for raw in responses if (response := _batch_response(raw)) is not None]


def envelopes(requests_: list[BatchRequest]) -> list[list[BatchRequest]]:
    """``requests_`` shared out into ``$batch`` envelopes: at most 20 each, and no more of one
    kind than one of Graph's rate limits allows at once (five reads of one team's channel
    messages go in two envelopes, since Teams allows four a second on one team). In order."""
    chunks: list[tuple[list[BatchRequest], Counter[tuple[str, str]]]] = []
    for request in requests_:
        limits = pacing.limits_for(request.method, request.url)
        for chunk, counts in chunks:
            if len(chunk) < MAX_BATCH and all(
                counts[(limit.name, scope)] < limit.requests for limit, scope in limits
            ):
                break
        else:
            chunk, counts = [], Counter()
            chunks.append((chunk, counts))
        chunk.append(request)
        counts.update((limit.name, scope) for limit, scope in limits)
    return [chunk for chunk, _ in chunks]


def follow_pages(
    get: Callable[..., dict[str, Any]],
    path_or_url: str,
    *,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    max_pages: int = 10_000,
) -> Iterator[dict[str, Any]]:
    """The paging generator: yield each page read with ``get``, following ``@odata.nextLink``.

    Raises:
        GraphError: a page could not be read or has no ``value`` list; pages already yielded
            stay valid, but the caller must treat the collection as incomplete.
    """
    url = path_or_url
    first = True
    for _ in range(max_pages):
        page = get(url, params=params if first else None, headers=headers)
        first = False
        value = page.get("value")
        if not isinstance(value, list):
            raise GraphError("a collection page has no 'value' list", endpoint=endpoint_name(url))
        yield page
        next_link = page.get("@odata.nextLink")
        if not next_link:
            return
        if not isinstance(next_link, str):
            raise GraphError("@odata.nextLink is not a string", endpoint=endpoint_name(url))
        url = next_link
    raise GraphError(
        f"more than {max_pages} pages; refusing to loop", endpoint=endpoint_name(path_or_url)
    )


def page_items(pages: Iterator[dict[str, Any]], path_or_url: str) -> Iterator[dict[str, Any]]:
    """The items of every page.

    Raises:
        GraphError: as the pages do; an item that is not an object is an error too.
    """
    for page in pages:
        for item in page["value"]:
            if not isinstance(item, dict):
                raise GraphError(
                    "a collection item is not a JSON object", endpoint=endpoint_name(path_or_url)
                )
            yield item


def _batch_response(raw: Any) -> BatchResponse | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        return None
    status = raw.get("status")
    if not isinstance(status, int):
        return None
    headers = raw.get("headers") if isinstance(raw.get("headers"), dict) else {}
    body = raw.get("body")
    if isinstance(body, str) and body.startswith(("{", "[")):
        with contextlib.suppress(ValueError):
            body = json.loads(body)
    return BatchResponse(
        raw["id"], status, {str(k): str(v) for k, v in (headers or {}).items()}, body
    )


def raise_for_batch(response: BatchResponse, *, url: str) -> dict[str, Any]:
    """Return a batch item's JSON body, or raise the typed error it stands for.

    Raises:
        GraphError: the item failed (a subclass says why).
    """
    if response.ok and isinstance(response.body, dict):
        return response.body
    if response.ok:
        raise GraphError(
            "a batch item answered with a body that is not an object",
            status=response.status,
            endpoint=endpoint_name(url),
        )
    raise error_for(response.status, response.body, endpoint=endpoint_name(url))
