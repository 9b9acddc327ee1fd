"""Run the fake tenant over HTTPS on loopback, in a background thread, for tests and demos."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from remote_guard.fakegraph.app import create_app
from remote_guard.fakegraph.scenario import Scenario
from remote_guard.fakegraph.tenant import RequestRecord, TenantState
from remote_guard.fakegraph.tls import write_tls_files

START_TIMEOUT_SECONDS = 15.0


class FakeTenantServer:
    """A fake Microsoft 365 tenant (Entra ID + Graph v1.0) served from a :class:`Scenario`.

    Point MSAL at :attr:`authority_host` (``instance_discovery=False``), Graph calls at
    :attr:`graph_base_url`, and both at :attr:`ca_path` for TLS verification.
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        state_dir: Path,
        clock: Callable[[], datetime] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """Build the tenant state (no socket, thread or file yet).

        Raises:
            ValueError: a time expression in the scenario cannot be resolved.
        """
        self.scenario = scenario
        self.state_dir = state_dir
        self.host = host
        self._requested_port = port
        self.state = TenantState(scenario, clock=clock)
        self.ca_path = state_dir / "ca.pem"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # --- addresses ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port.

        Raises:
            RuntimeError: the server has not been started.
        """
        if self._port is None:
            raise RuntimeError("the fake tenant server is not started; call start() first")
        return self._port

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def authority_host(self) -> str:
        return self.base_url

    @property
    def graph_base_url(self) -> str:
        return f"{self.base_url}/v1.0"

    @property
    def requests(self) -> list[RequestRecord]:
        """Every HTTP request served so far, batch items included (``in_batch=True``)."""
        return self.state.requests

    # --- scenario keys to Graph ids (for mapping findings back to the scenario) ---------------

    def join_url(self, meeting_key: str) -> str | None:
        """The Teams join URL of the scenario meeting, or None if it is not a Teams meeting.

        Raises:
            KeyError: no meeting has that key.
        """
        return self.state.meetings[meeting_key].join_url

    def occurrence_start(self, meeting_key: str) -> datetime | None:
        """The start of the meeting in its series (its calendar events' ``originalStart``), or
        None if it is not an occurrence of a recurring meeting.

        Raises:
            KeyError: no meeting has that key.
        """
        meeting = self.state.meetings[meeting_key]
        return meeting.start if meeting.series_key is not None else None

    def ical_uid(self, meeting_key: str) -> str:
        """The ``iCalUId`` of the scenario meeting's calendar events (the same in every mailbox).

        Raises:
            KeyError: no meeting has that key.
        """
        return self.state.meetings[meeting_key].ical_uid

    def call_record_id(self, call_key: str) -> str | None:
        """The call record id of the scenario's direct (peer-to-peer) call, None if no such call."""
        if call_key not in {call.key for call in self.scenario.calls}:
            return None
        return self.state.peer_call_id(call_key)

    def chat_id(self, chat_key: str) -> str | None:
        """The Graph chat id of the scenario's direct chat (``chats:``), None if no such chat."""
        return self.state.chat_id(chat_key)

    def series_id(self, meeting_key: str) -> str | None:
        """The series id remote_guard reports for the meeting: the ``seriesMasterId`` of the
        organiser's calendar copy. None if the meeting is not part of a series. (For a meeting
        organised in another tenant there is no such copy; the collector then uses the copy in
        the first staff calendar it reads.)

        Raises:
            KeyError: no meeting has that key.
        """
        meeting = self.state.meetings[meeting_key]
        return self.state.series_master_id(meeting, meeting.organizer.id)

    def external_identity_ids(self) -> dict[str, str]:
        """Graph id -> scenario key for every external joiner (anonymous, federated, phone)."""
        return {
            identity.id: key
            for key, identity in self.state.identities.items()
            if not identity.in_tenant
        }

    # --- settings for remote_guard --------------------------------------------------------------

    def tenant_settings(self) -> dict[str, Any]:
        """The ``[tenant]`` section of remote_guard's settings for this fake tenant.

        Raises:
            RuntimeError: the server has not been started.
        """
        return {
            "tenant_id": self.scenario.tenant.id,
            "client_id": self.scenario.app.client_id,
            "client_secret": self.scenario.app.client_secret,
            "authority_host": self.authority_host,
            "graph_base_url": self.graph_base_url,
            "ca_bundle": str(self.ca_path),
        }

    def directory_settings(self) -> dict[str, Any]:
        """The ``[directory]`` section: group ids for each role the scenario's groups carry."""
        return {
            "staff_group_ids": self.scenario.group_ids_for_role("staff"),
            "pupil_group_ids": self.scenario.group_ids_for_role("pupils"),
            "slt_group_ids": self.scenario.group_ids_for_role("slt"),
            "dsl_group_ids": self.scenario.group_ids_for_role("dsl"),
            "deputy_dsl_group_ids": self.scenario.group_ids_for_role("deputy_dsl"),
        }

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Write the TLS files, bind the port and serve in a daemon thread until accepting.

        Raises:
            RuntimeError: already started, or the server did not accept connections in time.
            OSError: the port cannot be bound or the state directory written.
        """
        if self._thread is not None:
            raise RuntimeError("the fake tenant server is already started")
        tls = write_tls_files(self.state_dir, hosts=(self.host, "localhost"))
        self.ca_path = tls.ca_path
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit this. Without it Nagle's algorithm and delayed ACKs add
        # ~40 ms to every TLS response (headers and body go out as separate records).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.host, self._requested_port))
        self._port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            create_app(self.state),
            ssl_certfile=str(tls.cert_path),
            ssl_keyfile=str(tls.key_path),
            log_level="warning",
            access_log=False,
            # Leave logging to the host process: uvicorn's default dictConfig would disable
            # every logger that exists already.
            log_config=None,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-tenant", daemon=True
        )
        self._thread.start()
        self._wait_until_accepting(tls.ca_path)

    def _wait_until_accepting(self, ca_path: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        context = ssl.create_default_context(cafile=str(ca_path))
        while time.monotonic() < deadline:
            assert self._thread is not None  # noqa: S101 - start() set it
            if not self._thread.is_alive():
                raise RuntimeError("the fake tenant server stopped while starting")
            if self._server is not None and self._server.started:
                try:
                    with (
                        socket.create_connection((self.host, self.port), timeout=1) as raw,
                        context.wrap_socket(raw, server_hostname=self.host),
                    ):
                        return
                except OSError:
                    pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"the fake tenant server did not accept connections within {START_TIMEOUT_SECONDS} s"
        )

    def stop(self) -> None:
        """Ask the server to finish and wait for its thread (idempotent)."""
        if self._server is not None:
            self._server.should_exit = True
            # Clients keep TLS connections alive; waiting for them to close would add seconds
            # to every test's teardown, and nothing in flight at stop() matters.
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None
        self._server = None

    def __enter__(self) -> FakeTenantServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
