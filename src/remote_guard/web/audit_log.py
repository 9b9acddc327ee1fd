"""The web app's one seam to the audit trail (``remote_guard.audit``).

Every change a user makes is recorded in the same database transaction as the change, by
``record_change`` here or by the domain service the route calls (``consent.service`` and the
others record their own row changes). Who acted and the request id are bound for the whole
request by the app's middleware (``audit.acting_as``), so entries written by services name the
signed-in user too. Sign-in, refusal and sign-out name the person explicitly, because no user
is bound yet (or any more) when they are written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from remote_guard import audit
from remote_guard.web.access import User


def actor_for(user: User) -> audit.Actor:
    """The audit trail's actor for a signed-in user: their Entra object id and acting role."""
    return audit.Actor(id=user.id, role=user.role.value)


def record_change(
    db: Session,
    action: str,
    *,
    object_type: str,
    object_id: str,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Record a change made by the signed-in user, in ``db``'s transaction.

    ``action`` is dotted, object first (``finding.status_changed``); ``before``/``after`` hold
    only the fields that changed.

    Raises:
        AuditError: the audit trail cannot be written; the caller's change must not commit.
    """
    audit.record(
        db,
        action,
        object_type=object_type,
        object_id=object_id,
        before=before,
        after=after,
        detail=detail,
    )


def record_view(
    db: Session, *, object_type: str, object_id: str, detail: Mapping[str, Any] | None = None
) -> None:
    """Record that the signed-in user opened a record about a child (a session's evidence).

    Raises:
        AuditError: the audit trail cannot be written.
    """
    audit.record(db, "web.viewed", object_type=object_type, object_id=object_id, detail=detail)


def record_sign_in(db: Session, user: User) -> None:
    audit.record(
        db,
        "web.signed_in",
        object_type="user",
        object_id=user.id,
        detail={"roles": sorted(user.roles), "schools": sorted(user.schools)},
        actor=actor_for(user),
    )


def record_sign_in_refused(db: Session, user_id: str, *, reason: str) -> None:
    audit.record(
        db,
        "web.sign_in_refused",
        object_type="user",
        object_id=user_id,
        detail={"reason": reason},
        actor=audit.Actor(id=user_id, role="none"),
    )


def record_sign_out(db: Session, user: User) -> None:
    audit.record(db, "web.signed_out", object_type="user", object_id=user.id, actor=actor_for(user))
