"""Signed-in sessions of the web app, kept on the server so that signing out ends them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from remote_guard.store.db import Base, UTCDateTime


class WebSessionRow(Base):
    """One browser session. The cookie holds a random token; only its SHA-256 is stored, so a
    copy of the database cannot be used to take over a session."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the token
    csrf_token: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # Before sign-in: the MSAL flow (state, nonce, PKCE verifier) and where to go afterwards.
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
