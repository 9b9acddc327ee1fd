"""Reading Graph in ``$batch`` envelopes, several at once.

:func:`send_batches` sends GETs in envelopes of 20 (Graph's limit), up to
``[poll] max_concurrent_requests`` envelopes at a time, each item retried on its own when it is
throttled (``GraphClient.batch``). :class:`BatchedReader` sits in front of the client for one
collector run: the reads the collector is about to make are fetched ahead in batches
(:meth:`BatchedReader.prefetch`) and then served from memory; any read that was not fetched
ahead (a page further on, a lookup nobody foresaw) goes to the client as before. What is served
is exactly what the client would have returned or raised, so fetching ahead changes how many
round trips a poll takes, never what it finds.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import structlog

from remote_guard.graph.client import (
    MAX_BATCH,
    BatchRequest,
    BatchResponse,
    GraphClient,
    follow_pages,
    page_items,
    raise_for_batch,
)
from remote_guard.graph.errors import GraphError

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Read:
    """A GET the collector is about to make. ``all_pages``: fetch the pages that follow too
    (in later batches); otherwise only the first page is fetched ahead."""

    path: str
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] | None = None
    all_pages: bool = False


@dataclass
class BatchOutcome:
    """Answers by request id; ``failed`` names the requests whose envelope could not be sent
    (after the client's retries), with the error."""

    answers: dict[str, BatchResponse] = field(default_factory=dict)
    failed: dict[str, GraphError] = field(default_factory=dict)


def send_batches(
    graph: GraphClient, requests: list[BatchRequest], pool: Executor | None
) -> BatchOutcome:
    """Send ``requests`` in envelopes of at most 20, on ``pool``'s threads (or one after the
    other without one). Never raises for Graph trouble: see :class:`BatchOutcome`."""
    chunks = [requests[index : index + MAX_BATCH] for index in range(0, len(requests), MAX_BATCH)]
    outcome = BatchOutcome()

    def send(chunk: list[BatchRequest]) -> tuple[list[BatchRequest], Any]:
        try:
            return chunk, graph.batch(chunk)
        except GraphError as exc:
            return chunk, exc

    # Each task runs in its own copy of the caller's context (taken here, on the caller's
    # thread), so log lines written on the pool's threads (the client's, MSAL's) still carry
    # the poll run's id.
    contexts = [contextvars.copy_context() for _ in chunks]
    results = (
        pool.map(lambda context, chunk: context.run(send, chunk), contexts, chunks)
        if pool is not None
        else map(send, chunks)
    )
    for chunk, result in results:
        if isinstance(result, GraphError):
            log.warning("graph.batch_failed", items=len(chunk), reason=result.reason)
            for request in chunk:
                outcome.failed[request.id] = result
        else:
            outcome.answers.update(result)
    return outcome


def _key(url: str, headers: Mapping[str, str] | None) -> tuple[str, str]:
    prefer = next((v for k, v in (headers or {}).items() if k.lower() == "prefer"), "")
    return url, prefer


class BatchedReader:
    """Serves reads fetched ahead in batches; everything else goes to ``graph``.

    Answers are kept for the whole collector run, so data shared by several sessions (the
    occurrences of a series share one meeting, chat and recordings) is read once.
    """

    def __init__(self, graph: GraphClient, *, pool: Executor | None) -> None:
        self._graph = graph
        self._pool = pool
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, str], BatchResponse | GraphError] = {}
        self.served = 0  # reads answered from a batch

    @property
    def graph(self) -> GraphClient:
        return self._graph

    @property
    def pool(self) -> Executor | None:
        return self._pool

    def prefetch(self, reads: Iterable[Read]) -> None:
        """Fetch ``reads`` (those not fetched already) in batches; follow the next links of
        ``all_pages`` reads in further batches until every page is in."""
        wanted: dict[tuple[str, str], tuple[Read, str]] = {}
        for read in reads:
            try:
                url = self._graph.batch_url(read.path, read.params)
            except GraphError:
                continue  # read directly later, where the error is reported as usual
            key = _key(url, read.headers)
            with self._lock:
                if key in self._answers:
                    continue
            wanted.setdefault(key, (read, url))
        while wanted:
            batch = list(wanted.items())
            requests = [
                BatchRequest(id=str(number), url=url, headers=dict(read.headers or {}))
                for number, (_, (read, url)) in enumerate(batch)
            ]
            outcome = send_batches(self._graph, requests, self._pool)
            follow: dict[tuple[str, str], tuple[Read, str]] = {}
            with self._lock:
                for number, (key, (read, _)) in enumerate(batch):
                    answer: BatchResponse | GraphError | None = outcome.answers.get(
                        str(number)
                    ) or outcome.failed.get(str(number))
                    if answer is None:
                        continue
                    self._answers[key] = answer
                    next_link = self._next_link(answer) if read.all_pages else None
                    if next_link is not None:
                        try:
                            next_url = self._graph.batch_url(next_link)
                        except GraphError:
                            continue
                        next_key = _key(next_url, read.headers)
                        if next_key not in self._answers:
                            follow[next_key] = (Read(next_link, None, read.headers, True), next_url)
            wanted = follow

    @staticmethod
    def _next_link(answer: BatchResponse | GraphError) -> str | None:
        if isinstance(answer, GraphError) or not answer.ok or not isinstance(answer.body, dict):
            return None
        link = answer.body.get("@odata.nextLink")
        return link if isinstance(link, str) else None

    def _fetched(
        self, path_or_url: str, params: Mapping[str, str] | None, headers: Mapping[str, str] | None
    ) -> BatchResponse | GraphError | None:
        try:
            url = self._graph.batch_url(path_or_url, params)
        except GraphError:
            return None
        with self._lock:
            return self._answers.get(_key(url, headers))

    def get(
        self,
        path_or_url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """As ``GraphClient.get``: from a batch if it was fetched ahead.

        Raises:
            GraphError: as ``GraphClient.get`` would (a batch item's failure is raised as the
                error it stands for, after the same retries).
        """
        answer = self._fetched(path_or_url, params, headers)
        if answer is None:
            return self._graph.get(path_or_url, params=params, headers=headers)
        with self._lock:
            self.served += 1
        if isinstance(answer, GraphError):
            raise answer
        return raise_for_batch(answer, url=path_or_url)

    def iter_pages(
        self,
        path_or_url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """As ``GraphClient.iter_pages``, each page from a batch where it was fetched ahead.

        Raises:
            GraphError: as ``GraphClient.iter_pages``.
        """
        if self._fetched(path_or_url, params, headers) is None:
            return self._graph.iter_pages(path_or_url, params=params, headers=headers)
        return follow_pages(self.get, path_or_url, params=params, headers=headers)

    def iter_items(
        self,
        path_or_url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """As ``GraphClient.iter_items``, each page from a batch where it was fetched ahead.

        Raises:
            GraphError: as ``GraphClient.iter_items``.
        """
        if self._fetched(path_or_url, params, headers) is None:
            return self._graph.iter_items(path_or_url, params=params, headers=headers)
        return page_items(self.iter_pages(path_or_url, params=params, headers=headers), path_or_url)
