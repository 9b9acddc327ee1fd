"""Who is who: staff, pupils, SLT and DSLs from the configured Entra groups, and how to classify
anyone else who turns up in a session (guest, anonymous, another tenant, phone, app).

The groups are read at most every ``[poll] directory_refresh_minutes`` (:class:`DirectoryCache`);
in between, each poll works on a copy that keeps the users looked up before.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import structlog

from remote_guard.collect.snapshot import Person, PersonKind, Role
from remote_guard.graph.client import GraphClient, GraphReads
from remote_guard.graph.errors import GraphError, GraphNotFoundError
from remote_guard.graph.models import (
    ConversationMember,
    DirectoryObject,
    IdentitySet,
    PayloadError,
    User,
    parse,
)
from remote_guard.settings import Settings

log = structlog.get_logger(__name__)

# The user properties read wherever a user is classified.
USER_SELECT = "id,displayName,userPrincipalName,mail,userType"


@dataclass
class Directory:
    """The people of the school tenant that the configured groups name, by Entra object id."""

    tenant_id: str
    people: dict[str, Person] = field(default_factory=dict)
    by_address: dict[str, str] = field(default_factory=dict)  # lower-case UPN or mail -> id
    looked_up: dict[str, Person] = field(default_factory=dict)
    looked_up_found: set[str] = field(default_factory=set)  # ids the directory confirmed exist
    # ids whose lookup failed (an outage, a bad answer) -> why: who they are is not known, so a
    # session they are in is not complete (the collector marks its directory data missing).
    lookup_failures: dict[str, str] = field(default_factory=dict)

    def domains(self) -> frozenset[str]:
        """The e-mail domains of the school's staff and pupils (from their UPNs and mail)."""
        return frozenset(
            address.rpartition("@")[2]
            for address in self.by_address
            if "@" in address
            and self.people.get(self.by_address[address]) is not None
            and self.people[self.by_address[address]].kind in (PersonKind.STAFF, PersonKind.PUPIL)
        )

    def find_by_address(self, address: str | None) -> Person | None:
        if not address:
            return None
        person_id = self.by_address.get(address.strip().lower())
        return self.people.get(person_id) if person_id else None

    def user(self, user_id: str, *, display_name: str | None, tenant_id: str | None) -> Person:
        """Classify an Entra user seen in a session (without a Graph call; see ``resolve``)."""
        known = self.people.get(user_id) or self.looked_up.get(user_id)
        if known is not None:
            return known
        if tenant_id and tenant_id.lower() != self.tenant_id.lower():
            return Person(
                id=user_id,
                display_name=display_name or "",
                kind=PersonKind.EXTERNAL,
                tenant_id=tenant_id,
            )
        return Person(
            id=user_id,
            display_name=display_name or "",
            kind=PersonKind.UNKNOWN,
            tenant_id=tenant_id or self.tenant_id,
        )

    def for_cycle(self) -> Directory:
        """A copy for the next poll: the same people, and the users looked up so far except
        those whose lookup failed (tried again)."""
        failed = set(self.lookup_failures)
        return replace(
            self,
            looked_up={pid: p for pid, p in self.looked_up.items() if pid not in failed},
            looked_up_found=set(self.looked_up_found),
            lookup_failures={},
        )

    def resolve(self, graph: GraphReads, person: Person) -> Person:
        """Look up a school-tenant user who is in none of the configured groups (at most once),
        to tell a guest account from an unlisted member."""
        if person.kind is not PersonKind.UNKNOWN or person.id in self.looked_up:
            return self.looked_up.get(person.id, person)
        resolved = person
        try:
            body = graph.get(f"/users/{person.id}", params={"$select": USER_SELECT})
            user = parse(User, body, what="user")
        except GraphNotFoundError:
            resolved = person
        except (GraphError, PayloadError) as exc:
            log.warning("directory.lookup_failed", user_id=person.id, reason=str(exc))
            self.lookup_failures[person.id] = (
                exc.reason if isinstance(exc, GraphError) else str(exc)
            )
        else:
            self.looked_up_found.add(person.id)
            kind = (
                PersonKind.GUEST
                if (user.user_type or "").lower() == "guest"
                else PersonKind.UNKNOWN
            )
            resolved = Person(
                id=person.id,
                display_name=user.display_name or person.display_name,
                kind=kind,
                tenant_id=self.tenant_id,
                email=user.mail or user.user_principal_name,
            )
        self.looked_up[person.id] = resolved
        return resolved

    def identity(self, identity_set: IdentitySet | None, *, fallback_id: str) -> Person:
        """Classify a communications identity set (call record participant, chat sender)."""
        if identity_set is None:
            return Person(id=fallback_id, kind=PersonKind.UNKNOWN)
        kind_name = identity_set.kind()
        primary = identity_set.primary()
        name = (primary.display_name if primary else None) or ""
        ident = (primary.id if primary else None) or fallback_id
        user_type = (primary.user_identity_type if primary else None) or ""
        if kind_name == "user" and user_type in _NO_ACCOUNT_USER_TYPES:
            # A chat's teamworkUserIdentity says outright that there is no account behind it
            # (someone who joined a meeting by link, or by phone): nothing to look up.
            kind = _NO_ACCOUNT_USER_TYPES[user_type]
            prefix = "phone" if kind is PersonKind.PHONE else "anon"
            return Person(id=f"{prefix}:{ident}", display_name=name, kind=kind)
        if kind_name == "user" and primary is not None and primary.id:
            person = self.user(
                primary.id, display_name=primary.display_name, tenant_id=primary.tenant_id
            )
            if person.kind is PersonKind.EXTERNAL and person.email is None:
                # A federated user's UPN is their sign-in address, how an invitation names them.
                return person.model_copy(update={"email": primary.user_principal_name})
            return person
        if kind_name in {"application", "applicationInstance"}:
            return Person(id=f"app:{ident}", display_name=name, kind=PersonKind.APPLICATION)
        if kind_name == "phone":
            return Person(id=f"phone:{ident}", display_name=name, kind=PersonKind.PHONE)
        if kind_name in {"guest", "acsUser", "spoolUser", "azureCommunicationServicesUser"}:
            return Person(id=f"anon:{ident}", display_name=name, kind=PersonKind.ANONYMOUS)
        return Person(id=f"unknown:{ident}", display_name=name, kind=PersonKind.UNKNOWN)

    def member(self, obj: DirectoryObject) -> Person:
        """Classify a user read from a group's member list (an invited group, a team)."""
        known = self.people.get(obj.id) or self.looked_up.get(obj.id)
        if known is not None:
            return known
        guest = (obj.user_type or "").lower() == "guest"
        return Person(
            id=obj.id,
            display_name=obj.display_name or "",
            kind=PersonKind.GUEST if guest else PersonKind.UNKNOWN,
            tenant_id=self.tenant_id,
            email=obj.mail or obj.user_principal_name,
        )

    def chat_member(self, member: ConversationMember) -> Person:
        """Classify a chat member (a ``conversationMember`` of ``/chats``).

        Users (``aadUserConversationMember``) are classified like any Entra user, by their id and
        tenant; the other member types name people without a school account.
        """
        name = member.display_name or ""
        if member.user_id:
            return self.user(member.user_id, display_name=name, tenant_id=member.tenant_id)
        member_type = (member.odata_type or "").rsplit(".", 1)[-1]
        kind = _MEMBER_KINDS.get(member_type, PersonKind.UNKNOWN)
        prefix = {
            PersonKind.ANONYMOUS: "anon",
            PersonKind.PHONE: "phone",
            PersonKind.EXTERNAL: "external",
        }.get(kind, "unknown")
        return Person(id=f"{prefix}:{member.id}", display_name=name, kind=kind)


# teamworkUserIdentity.userIdentityType values (chat message senders, call events) of people
# with no account of any tenant behind them.
_NO_ACCOUNT_USER_TYPES = {
    "anonymousGuest": PersonKind.ANONYMOUS,
    "azureCommunicationServicesUser": PersonKind.ANONYMOUS,
    "phoneUser": PersonKind.PHONE,
}


# conversationMember subtypes that carry no Entra user id, and who they are to the school.
_MEMBER_KINDS = {
    "anonymousGuestConversationMember": PersonKind.ANONYMOUS,
    "azureCommunicationServicesUserConversationMember": PersonKind.ANONYMOUS,
    "microsoftAccountUserConversationMember": PersonKind.EXTERNAL,
    "skypeForBusinessUserConversationMember": PersonKind.EXTERNAL,
    "skypeUserConversationMember": PersonKind.EXTERNAL,
    "phoneUserConversationMember": PersonKind.PHONE,
}


def group_users(graph: GraphReads, group_id: str) -> list[DirectoryObject]:
    """The users in a group, directly or through nested groups (``transitiveMembers``).

    Raises:
        GraphError: the members could not be read, or a member was not a directory object.
    """
    users: list[DirectoryObject] = []
    for item in graph.iter_items(
        f"/groups/{group_id}/transitiveMembers", params={"$select": USER_SELECT}
    ):
        try:
            obj = parse(DirectoryObject, item, what="group member")
        except PayloadError as exc:
            raise GraphError(str(exc), endpoint="/groups/{id}/transitiveMembers") from exc
        # Nested groups, devices and service principals are not people.
        if obj.odata_type in (None, "#microsoft.graph.user") and obj.id:
            users.append(obj)
    return users


def load_directory(graph: GraphClient, settings: Settings) -> Directory:
    """Read the members of every configured group.

    Raises:
        GraphError: a group could not be read. Without the directory nobody can be told apart,
            so the poll stops rather than guessing.
    """
    directory_settings = settings.directory
    members: dict[str, set[str]] = {}
    users: dict[str, DirectoryObject] = {}

    def read(group_ids: tuple[str, ...]) -> set[str]:
        ids: set[str] = set()
        for group_id in group_ids:
            if group_id in members:
                ids |= members[group_id]
                continue
            found: set[str] = set()
            for obj in group_users(graph, group_id):
                users[obj.id] = obj
                found.add(obj.id)
            members[group_id] = found
            ids |= found
        return ids

    staff = read(directory_settings.staff_group_ids)
    pupils = read(directory_settings.pupil_group_ids)
    roles: dict[str, set[Role]] = {}
    for role, group_ids in (
        (Role.SLT, directory_settings.slt_group_ids),
        (Role.DSL, directory_settings.dsl_group_ids),
        (Role.DEPUTY_DSL, directory_settings.deputy_dsl_group_ids),
    ):
        for user_id in read(group_ids):
            roles.setdefault(user_id, set()).add(role)
    school_of: dict[str, str] = {}
    for school in settings.schools:
        for user_id in read(school.group_ids):
            school_of.setdefault(user_id, school.key)

    directory = Directory(tenant_id=settings.tenant.tenant_id)
    both = staff & pupils
    if both:
        # A child wrongly listed as staff would hide one-to-ones; treat such accounts as pupils.
        log.warning("directory.in_staff_and_pupil_groups", count=len(both))
    for user_id, obj in users.items():
        if user_id in pupils:
            kind = PersonKind.PUPIL
        elif user_id in staff:
            kind = PersonKind.STAFF
        else:
            continue
        person = Person(
            id=user_id,
            display_name=obj.display_name or "",
            kind=kind,
            roles=frozenset(roles.get(user_id, set())) if kind is PersonKind.STAFF else frozenset(),
            tenant_id=settings.tenant.tenant_id,
            school=school_of.get(user_id),
            email=obj.mail or obj.user_principal_name,
        )
        directory.people[user_id] = person
        for address in (obj.mail, obj.user_principal_name):
            if address:
                directory.by_address[address.lower()] = user_id
    return directory


class DirectoryCache:
    """The directory, read again once it is ``refresh`` old (or the clock went back); each
    :meth:`current` call gives the poll its own copy (:meth:`Directory.for_cycle`).

    ``refresh`` of zero reads the groups every time, as every poll once did.
    """

    def __init__(self, refresh: timedelta) -> None:
        self._refresh = refresh
        self._latest: Directory | None = None
        self.loaded_at: datetime | None = None

    def current(self, graph: GraphClient, settings: Settings, now: datetime) -> Directory:
        """The directory for a poll starting ``now``.

        Raises:
            GraphError: the groups had to be read again and could not be (the copy read before
                is kept for the next try, but not used: a poll must not run on a directory it
                was due to refresh and could not).
        """
        stale = (
            self._latest is None
            or self.loaded_at is None
            or now < self.loaded_at
            or now - self.loaded_at >= self._refresh
        )
        if stale:
            self._latest = load_directory(graph, settings)
            self.loaded_at = now
        else:
            assert self._latest is not None  # noqa: S101 - narrowed by `stale`
            self._latest = self._latest.for_cycle()
        return self._latest
