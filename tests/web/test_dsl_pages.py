"""The DSL's pages with the test client: the queue and its filters, the evidence page, the case
actions with their audit entries, the hand-off page and CSV, and hostile text shown escaped."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from remote_guard.web import dsl_views
from tests.web.conftest import HOSTILE_NAME, csrf_token, sign_in
from tests.web.dsl_support import HOSTILE_SUBJECT, DslTenant, dsl_tenant

pytestmark = pytest.mark.database


@pytest.fixture(scope="module")
def dsl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DslTenant]:
    with dsl_tenant(tmp_path_factory.mktemp("dsl-pages")) as tenant:
        yield tenant


@pytest.fixture
def as_dsl(dsl: DslTenant) -> Iterator[TestClient]:
    with dsl.web.client() as client:
        sign_in(client, dsl.web, "dsl")
        yield client


@pytest.fixture
def as_deputy(dsl: DslTenant) -> Iterator[TestClient]:
    with dsl.web.client() as client:
        sign_in(client, dsl.web, "deputy")
        yield client


def _rows(html: str) -> list[str]:
    """The queue's rows, as the subjects linked in them."""
    return re.findall(r'<a href="/dsl/sessions/[^"]+" dir="auto">([^<]*)</a>', html)


# --- the queue ----------------------------------------------------------------------------------


def test_the_queue_lists_sessions_newest_first_with_counts_and_case(
    dsl: DslTenant, as_dsl: TestClient
) -> None:
    page = as_dsl.get("/dsl")
    assert page.status_code == 200
    assert _rows(page.text) == [
        "Elm maths",
        "Reading catch-up with Amelia K.",
        "Oak Class story time",
        "&lt;script&gt;alert(&#34;subject&#34;)&lt;/script&gt; Year 4 &#39;catch-up&#39; "
        "&#34;maths&#34; \u202eevil\u202c \u200f",
    ]
    assert "Wed 18 Nov 10:00" in page.text  # school local time
    assert "Olive Oak" in page.text
    assert "Ellis Elm" in page.text
    assert '<li class="sev sev-high">1 high</li>' in page.text
    assert '<span class="case case-new">New</span>' in page.text
    assert "4 sessions" in page.text


def test_the_queue_filters(dsl: DslTenant, as_dsl: TestClient) -> None:
    def shown(**params: str) -> list[str]:
        return _rows(as_dsl.get("/dsl", params=params).text)

    assert shown(school="south") == ["Elm maths"]
    assert shown(rule="pupil_meeting_chat") == ["Oak Class story time"]
    assert "Oak Class story time" in shown(rule="outsider_in_pupil_session")
    assert shown(severity="info") == []
    assert shown(case_status="closed") == []
    assert len(shown(case_status="any")) == 4
    assert shown(start="2026-11-19") == []
    assert len(shown(start="2026-11-18", end="2026-11-18")) == 4
    assert shown(end="2026-11-17") == []
    assert shown(assignee="me") == []
    # Unknown choices fall back to the defaults; nothing breaks.
    assert len(shown(severity="<b>", case_status="x", finding_status="y", school="mars")) == 4
    bad_date = as_dsl.get("/dsl", params={"start": "18/11/2026"})
    assert bad_date.status_code == 200
    assert 'aria-describedby="f-start-problem"' in bad_date.text
    assert "Enter a date such as 2026-11-18." in bad_date.text
    # A date at the end of the calendar is refused the same way, not an overflow.
    far = as_dsl.get("/dsl", params={"end": "9999-12-31", "start": "0001-01-01"})
    assert far.status_code == 200
    assert 'aria-describedby="f-end-problem"' in far.text


def test_the_queue_pages(
    dsl: DslTenant, as_dsl: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dsl_views, "PER_PAGE", 3)
    first = as_dsl.get("/dsl", params={"school": "", "severity": ""})
    assert len(_rows(first.text)) == 3
    assert "Page 1 of 2" in first.text
    link = re.search(r'href="(/dsl\?[^"]*page=2)" rel="next"', first.text)
    assert link is not None
    second = as_dsl.get(link.group(1).replace("&amp;", "&"))
    assert "Page 2 of 2" in second.text
    assert len(_rows(second.text)) == 1
    assert 'rel="prev"' in second.text


def test_the_queue_form_is_labelled_and_works_without_javascript(as_dsl: TestClient) -> None:
    page = as_dsl.get("/dsl").text
    assert '<form method="get" action="/dsl"' in page
    for field in ("f-rule", "f-severity", "f-case-status", "f-finding-status", "f-start", "f-end"):
        assert f'<label for="{field}">' in page
    assert "<script" not in page.replace("&lt;script", "")


# --- the evidence page --------------------------------------------------------------------------


def test_the_evidence_page_shows_who_when_chat_consent_and_clause(
    dsl: DslTenant, as_dsl: TestClient
) -> None:
    session_id = dsl.session_id("oak-class")
    before = len(dsl.audit("web.viewed"))
    page = as_dsl.get(f"/dsl/sessions/{session_id}")
    assert page.status_code == 200
    text = page.text
    # Who was there: a table with each person's kind and times, the organiser first.
    assert '<th scope="row" dir="auto">Olive Oak (organiser)</th>' in text
    assert re.search(r"Gus Guest</th>\s*<td>Guest</td>", text)
    assert re.search(r"Amelia K\.</th>\s*<td>Pupil</td>", text)
    assert "Wed 18 Nov 09:10 to Wed 18 Nov 09:20" in text  # the guest's time in the session
    assert '<rect class="span"' in text  # the bar timeline beside the table
    # Chat: who and when; the school keeps no text, so none is shown.
    assert re.search(
        r"<td>Wed 18 Nov 09:05</td><td dir=\"auto\">Noah B\.</td><td>Pupil</td><td dir=\"auto\">message</td>",
        text,
    )
    assert "hello miss" not in text
    # Consent and registration of the pupils involved.
    assert "None recorded" in text
    assert "No one-to-one registered for this session" in text
    # A finding with its clause, version and the clause's text from the profile.
    assert "Outsider in a session with pupils" in text
    assert "BSF-A.pupil-remote.8, version 1 (SHOULD)" in text
    assert "only the people invited should be able to join a session with pupils" in text
    assert "Next step" in text
    # Opening it is recorded, naming the DSL.
    viewed = dsl.audit("web.viewed")
    assert len(viewed) == before + 1
    assert (viewed[-1].object_id, viewed[-1].actor_id) == (session_id, dsl.web.person_id("dsl"))


def test_a_dsl_takes_a_case_from_new_to_closed_with_notes(
    dsl: DslTenant, as_dsl: TestClient
) -> None:
    session_id = dsl.session_id("elm-1to1")
    base = f"/dsl/sessions/{session_id}"
    token = csrf_token(as_dsl)
    moves_before = len(dsl.audit("case.status_changed"))
    started = as_dsl.post(
        f"{base}/status", data={"to": "in_review", "csrf_token": token}, follow_redirects=False
    )
    assert started.status_code == 303
    assert started.headers["location"] == f"{base}?done=status#case"
    # Closing without a resolution is refused, with the problem linked to the radio group.
    refused = as_dsl.post(
        f"{base}/status", data={"to": "closed", "note": "Kept text", "csrf_token": token}
    )
    assert refused.status_code == 400
    assert 'aria-describedby="status-problem"' in refused.text
    assert "Choose a resolution to close the case." in refused.text
    assert "Kept text" in refused.text  # what was typed is not lost
    closed = as_dsl.post(
        f"{base}/status",
        data={
            "to": "closed",
            "resolution": "referred_on",
            "note": "Referred to the LADO.",
            "csrf_token": token,
        },
    )
    assert closed.status_code == 200  # after the redirect
    assert "The case&#39;s status was changed." in closed.text
    assert 'data-testid="case-status">Closed<' in closed.text
    assert 'data-testid="case-resolution">Referred on<' in closed.text
    assert "Referred to the LADO." in closed.text
    assert "Reopen case" in closed.text
    moves = dsl.audit("case.status_changed")[moves_before:]
    assert [m.actor_id for m in moves] == [dsl.web.person_id("dsl")] * 2
    assert '"after":{"resolution":null,"status":"in_review"}' in moves[0].payload
    assert '"after":{"resolution":"referred_on","status":"closed"}' in moves[1].payload
    reopened = as_dsl.post(f"{base}/status", data={"to": "in_review", "csrf_token": token})
    assert 'data-testid="case-status">In review<' in reopened.text


def test_a_case_action_without_the_csrf_token_changes_nothing(
    dsl: DslTenant, as_dsl: TestClient
) -> None:
    session_id = dsl.session_id("oak-class")
    before = len(dsl.audit("case.note_added"))
    refused = as_dsl.post(f"/dsl/sessions/{session_id}/notes", data={"text": "forged"})
    assert refused.status_code == 403
    assert len(dsl.audit("case.note_added")) == before


def test_assigning_a_case(dsl: DslTenant, as_dsl: TestClient, as_deputy: TestClient) -> None:
    session_id = dsl.session_id("elm-1to1")
    base = f"/dsl/sessions/{session_id}"
    token = csrf_token(as_dsl)
    deputy_id = dsl.web.person_id("deputy")
    page = as_dsl.post(f"{base}/assign", data={"assignee": deputy_id, "csrf_token": token})
    assert page.status_code == 200
    assert re.search(r"<dt>Assigned to</dt><dd dir=\"auto\">Dee Deputy</dd>", page.text)
    # Only the DSL and deputy DSLs of the school are offered, and only they can be given it.
    assert '<option value="' + dsl.web.person_id("t.elm") not in page.text
    wrong = as_dsl.post(
        f"{base}/assign", data={"assignee": dsl.web.person_id("t.elm"), "csrf_token": token}
    )
    assert wrong.status_code == 400
    assert "Cases can be assigned only to the DSL or a deputy DSL." in wrong.text
    # The deputy cannot pass it to the DSL, but can give back the case they hold.
    deputy_token = csrf_token(as_deputy)
    passed = as_deputy.post(
        f"{base}/assign",
        data={"assignee": dsl.web.person_id("dsl"), "csrf_token": deputy_token},
        follow_redirects=False,
    )
    assert passed.status_code == 403
    given_back = as_deputy.post(
        f"{base}/assign", data={"assignee": "", "csrf_token": deputy_token}, follow_redirects=False
    )
    assert given_back.status_code == 303
    assigned = dsl.audit("case.assigned")
    assert [entry.actor_id for entry in assigned[-2:]] == [
        dsl.web.person_id("dsl"),
        deputy_id,
    ]


# --- the hand-off -------------------------------------------------------------------------------


def test_the_handoff_page_and_csv(dsl: DslTenant, as_dsl: TestClient) -> None:
    session_id = dsl.session_id("oak-1to1")
    token = csrf_token(as_dsl)
    formula = '=HYPERLINK("http://evil.example","click")'
    as_dsl.post(f"/dsl/sessions/{session_id}/notes", data={"text": formula, "csrf_token": token})
    before = len(dsl.audit("case.exported"))
    printable = as_dsl.get(f"/dsl/sessions/{session_id}/handoff")
    assert printable.status_code == 200
    assert "<h1>Hand-off summary</h1>" in printable.text
    assert "have parental permission obtained before it takes place" in printable.text
    assert "=HYPERLINK(&#34;http://evil.example&#34;,&#34;click&#34;)" in printable.text
    exported = as_dsl.get(f"/dsl/sessions/{session_id}/handoff.csv")
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(
        r'attachment; filename="remote-guard-handoff-2026-11-18-case-\d+\.csv"',
        exported.headers["content-disposition"],
    )
    rows = list(csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff"))))
    assert [row["record"] for row in rows][:1] == ["case"]
    assert {row["record"] for row in rows} == {"case", "finding", "note"}
    assert all(row["session_subject"] == "Reading catch-up with Amelia K." for row in rows)
    finding = next(
        row
        for row in rows
        if row["rule"] == "One-to-one session without approval and parental consent"
    )
    assert finding["clause"] == "BSF-A.staff-remote.4"
    assert "parental permission" in finding["clause_text"]
    note = next(row for row in rows if row["record"] == "note")
    assert note["note_text"] == "'" + formula  # shown as text, never run as a formula
    assert note["note_by"] == "Dev Safeguard"
    exports = dsl.audit("case.exported")[before:]
    assert ['"format":"print"' in e.payload for e in exports] == [True, False]
    assert '"format":"csv"' in exports[1].payload


# --- hostile text -------------------------------------------------------------------------------


def test_hostile_subjects_names_and_notes_are_shown_escaped(
    dsl: DslTenant, as_dsl: TestClient
) -> None:
    session_id = dsl.session_id("hostile")
    base = f"/dsl/sessions/{session_id}"
    token = csrf_token(as_dsl)
    note = "<img src=x onerror=alert(1)> \"quoted\" 'single' \u202eesrever\u202c done"
    as_dsl.post(f"{base}/notes", data={"text": note, "csrf_token": token})
    long_note = "A" * 10_000
    as_dsl.post(f"{base}/notes", data={"text": long_note, "csrf_token": token})
    too_long = as_dsl.post(f"{base}/notes", data={"text": "B" * 20_000, "csrf_token": token})
    assert too_long.status_code == 400
    assert "A note can be at most 10,000 characters; this one has 20,000." in too_long.text
    assert 'aria-describedby="note-problem"' in too_long.text
    for path in ("/dsl", base, f"{base}/handoff"):
        body = as_dsl.get(path).text
        assert "<script>alert" not in body
        assert "<img src=x" not in body
        if path != "/dsl":
            assert "&lt;img src=x onerror=alert(1)&gt; &#34;quoted&#34; &#39;single&#39;" in body
            assert "\u202eesrever\u202c" in body  # kept as text, inside a dir="auto" element
            assert long_note in body
        assert "&lt;script&gt;alert(&#34;subject&#34;)&lt;/script&gt;" in body
    evidence = as_dsl.get(base).text
    escaped_name = (
        "Si\u00e2n O&#39;Brien &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; \u202eelbat"
    )
    assert escaped_name in evidence  # the organiser's hostile display name
    assert HOSTILE_NAME not in evidence
    assert HOSTILE_SUBJECT not in evidence
    api = as_dsl.get(f"/api/v1/sessions/{session_id}").json()
    assert api["session"]["subject"] == HOSTILE_SUBJECT  # JSON carries the text as it is
    assert note in [n["text"] for n in api["case"]["notes"]]
