"""Assembles change notifications for one process: receiver, worker, handlers, subscriptions.

``remote-guard poll`` builds a :class:`Notifications` beside its poller: it attaches the live
overlay and the after-cycle work to the poller, runs the subscription sync as a scheduled job
and serves the receiver on ``[notifications] listen_host:listen_port`` (HTTPS with
``tls_cert_file``, else plain HTTP behind a TLS-terminating proxy) when ``receiver = "poller"``.
``remote-guard serve`` builds one for the web app when ``receiver = "web"`` and carries its routes
at ``notification_url``'s path; a poll it asks for reaches the poller through the database.
"""

from __future__ import annotations

import ssl
import time
from datetime import timedelta
from pathlib import Path
from types import TracebackType

import structlog
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.routing import Route

from remote_guard.clock import Clock
from remote_guard.graph.client import GraphClient
from remote_guard.poll.scheduler import IntervalJob
from remote_guard.poll.service import Poller, PollResult
from remote_guard.settings import ConfigError, Settings
from remote_guard.subscriptions.alerts import LiveAlerts, SltMailer
from remote_guard.subscriptions.directory import LiveDirectory
from remote_guard.subscriptions.handlers import Handlers
from remote_guard.subscriptions.live import LiveOverlay, LiveState
from remote_guard.subscriptions.manager import SubscriptionManager
from remote_guard.subscriptions.receiver import Receiver, receiver_app, receiver_routes
from remote_guard.subscriptions.wake import PollWaker
from remote_guard.subscriptions.worker import NotificationWorker
from remote_guard.web.server import WebServer, bind

log = structlog.get_logger(__name__)

SYNC_SECONDS = 60.0
# While an alert is open its session is judged again this often (the rule needs the stretch to
# pass its threshold before it records a finding).
ALERT_REFRESH_SECONDS = 15.0
IDLE_EVERY_SECONDS = 5.0


def sync_job_id(tenant_id: str) -> str:
    return f"subscriptions:{tenant_id}"


class Notifications:
    """Everything change notifications need, for one tenant, in this process."""

    def __init__(self, poller: Poller) -> None:
        """Raises: ConfigError: ``[notifications]`` has no clientState secret."""
        settings = poller.settings
        config = settings.notifications
        if config.client_state is None:
            raise ConfigError(
                "[notifications] client_state_file: is required for change notifications; "
                "it is the secret Graph repeats in every notification.\n"
                '    Example of a good value: client_state_file = "/run/secrets/'
                'remote_guard_client_state"'
            )
        self.poller = poller
        self.settings = settings
        clock = poller.clock
        self.waker = PollWaker(poller.db, settings.tenant.tenant_id, clock)
        self.directory = LiveDirectory(poller.graph, settings, clock)
        self.live = LiveState(poller)
        mailer = SltMailer(settings, poller.graph) if settings.notify.enabled else None
        self.alerts = LiveAlerts(
            poller=poller,
            live=self.live,
            mailer=mailer,
            clock=clock,
            mail_after=timedelta(seconds=config.live_alert_mail_after_seconds),
        )
        self.manager = SubscriptionManager(
            settings=settings,
            graph=poller.graph,
            db=poller.db,
            clock=clock,
            directory=self.directory,
        )
        self.handlers = Handlers(
            poller=poller,
            manager=self.manager,
            live=self.live,
            alerts=self.alerts,
            waker=self.waker,
            directory=self.directory,
            clock=clock,
        )
        self.worker = NotificationWorker(self.handlers.handle, idle=self._idle)
        self.receiver = Receiver(
            client_state=config.client_state.get_secret_value(),
            sink=self.worker.offer,
            clock=clock,
        )
        self._idle_at = 0.0
        self._refreshed: dict[str, float] = {}

    # --- wiring -----------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        """The receiver's routes at ``notification_url``'s path (for the web app)."""
        return receiver_routes(self.receiver, self.settings.notifications.receiver_path)

    def app(self) -> Starlette:
        """The receiver as an app of its own (next to the poller)."""
        return receiver_app(self.receiver, self.settings.notifications.receiver_path)

    def attach(self) -> None:
        """Hook into the poller: live data survives its cycles, and after each cycle the
        subscriptions follow the meetings it found."""
        poller = self.poller
        poller.live_overlay = LiveOverlay(poller.db)
        previous = poller.after_cycle

        def after_cycle(result: PollResult) -> None:
            if previous is not None:
                try:
                    previous(result)
                except Exception:
                    log.exception("notifications.previous_hook_failed")
            self.after_cycle(result)

        poller.after_cycle = after_cycle

    def after_cycle(self, result: PollResult) -> None:
        """Fold live data into sessions a cycle re-read while it arrived, then sync."""
        try:
            for session_id in self.live.touched_since(result.started_at):
                self.live.refresh(session_id, now=self.poller.clock())
        except Exception:
            log.exception("notifications.repair_failed")
        self.manager.sync()

    def jobs(self) -> list[IntervalJob]:
        """The subscription sync, to run beside the poll job."""
        tenant = self.settings.tenant.tenant_id
        return [
            IntervalJob(
                id=sync_job_id(tenant),
                name=f"subscriptions tenant {tenant}",
                func=self.manager.sync,
                seconds=SYNC_SECONDS,
            )
        ]

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()

    def _idle(self) -> None:
        now = time.monotonic()
        if now - self._idle_at < IDLE_EVERY_SECONDS:
            return
        self._idle_at = now
        self.alerts.mail_due()
        for session_id in self.alerts.open_session_ids():
            if now - self._refreshed.get(session_id, 0.0) < ALERT_REFRESH_SECONDS:
                continue
            self._refreshed[session_id] = now
            self.live.refresh(session_id, now=self.poller.clock())


def mount(app: Starlette, hub: Notifications) -> None:
    """Carry the receiver's routes in ``app`` (the web app), ahead of its own, as plain routes:
    Graph signs in to nothing, so the app's sign-in and CSRF checks must not apply to them."""
    app.router.routes[0:0] = hub.routes()


def web_poller(
    settings: Settings, db: sessionmaker[Session], graph: GraphClient, clock: Clock
) -> Poller:
    """A poller for the web process's notification worker: it evaluates and stores, and reads
    single resources from Graph; it never runs a poll cycle.

    Raises:
        ProfileError: the configured profile is missing or refers to unknown rules.
    """
    from remote_guard.policy.profile import load_policy
    from remote_guard.rules.registry import load_rules

    registry = load_rules()
    policy = load_policy(
        settings.policy.profile, settings.policy.packs, settings.policy.profile_dirs, registry
    )
    return Poller(
        settings=settings, graph=graph, db=db, policy=policy, registry=registry, clock=clock
    )


class ReceiverServer:
    """The receiver served by uvicorn in a daemon thread, HTTPS when given a certificate."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        certfile: Path | None = None,
        keyfile: Path | None = None,
    ) -> None:
        """Bind now, so the port (0: a free one) is known before the settings are made.

        Raises:
            OSError: the address cannot be bound.
        """
        self._sock = bind(host, port)
        self.host = host
        self._certfile = certfile
        self._keyfile = keyfile
        self._server: WebServer | None = None

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def url(self, path: str) -> str:
        scheme = "https" if self._certfile is not None else "http"
        return f"{scheme}://{self.host}:{self.port}/{path.strip('/')}"

    def start(self, app: Starlette) -> None:
        """Serve ``app`` and wait until it accepts connections.

        Raises:
            RuntimeError: already started, or not accepting in time.
            ssl.SSLError: the certificate or key cannot be used.
        """
        if self._server is not None:
            raise RuntimeError("the receiver is already started")
        options: dict[str, object] = {}
        if self._certfile is not None:
            # Fail here, with the file named, rather than in the server thread.
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self._certfile), str(self._keyfile))
            options = {"ssl_certfile": str(self._certfile), "ssl_keyfile": str(self._keyfile)}
        self._server = WebServer(app, self._sock, name="notification-receiver", **options)
        self._server.start()

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None:
            self._server.stop()
        self._server = None
        self._sock.close()

    def __enter__(self) -> ReceiverServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
