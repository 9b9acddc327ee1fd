"""The one error type of the Graph seam, and what it knows about retrying."""

from __future__ import annotations


class GraphError(Exception):
    """A Graph (or identity platform) call failed.

    ``retryable`` says whether trying again later can help (throttling, outages, timeouts);
    permanent errors (permission missing, not found, bad request) are not retried.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        endpoint: str = "",
        retryable: bool = False,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.endpoint = endpoint
        self.retryable = retryable
        self.request_id = request_id

    @property
    def reason(self) -> str:
        """A one-line reason fit for a snapshot's ``missing`` map or a checklist."""
        parts = [f"HTTP {self.status}" if self.status else "no response"]
        if self.code:
            parts.append(self.code)
        return f"{self.endpoint}: {' '.join(parts)}: {self}"


class GraphAuthError(GraphError):
    """No token could be obtained from the identity platform."""


class GraphPermissionError(GraphError):
    """403: the app lacks a permission, or no Teams application access policy covers the user."""

    @property
    def is_access_policy(self) -> bool:
        return "application access policy" in str(self).lower()


class GraphNotFoundError(GraphError):
    """404: the object does not exist (or no longer does)."""


class GraphSyncStateError(GraphError):
    """A delta link is no longer valid; a full resync is needed."""
