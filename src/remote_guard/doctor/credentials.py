"""The app's credential on this server, and what Entra ID says when asked for a token.

Entra's refusals carry an AADSTS code; each code below maps to the setting or the Entra page
that fixes it. Codes are matched in ``error_description`` (MSAL passes it through) or, for an
unknown tenant, in the answer of the tenant's OpenID configuration document, which MSAL reads
first and reports without the code.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from remote_guard.doctor.report import Check, Status
from remote_guard.graph.errors import GraphAuthError
from remote_guard.settings import TenantSettings

_APP = "Entra admin centre (entra.microsoft.com) > App registrations > your remote_guard app"
CERTIFICATE_WARN_DAYS = 30
_AADSTS = re.compile(r"AADSTS(\d+)")


@dataclass(frozen=True)
class _Diagnosis:
    what: str  # what is wrong, in a technician's words
    fix: str


def _diagnoses(tenant: TenantSettings) -> dict[int, _Diagnosis]:
    client = tenant.client_id
    wrong_tenant = _Diagnosis(
        f"Entra ID does not know the tenant {tenant.tenant_id!r}",
        "set [tenant] tenant_id to the Directory (tenant) ID shown at Entra admin centre > "
        "Overview > Tenant ID (a GUID), or your tenant's domain such as "
        "yourschool.onmicrosoft.com",
    )
    wrong_secret = _Diagnosis(
        "Entra ID refused the client secret: it is not a current secret of this app",
        f"at {_APP} > Certificates & secrets > Client secrets make a new secret and copy its "
        "Value (not its Secret ID) into the file named by client_secret_file (or "
        "REMOTE_GUARD_TENANT__CLIENT_SECRET); better, use a certificate (docs/setup-entra.md)",
    )
    certificate = _Diagnosis(
        "Entra ID refused the certificate: the app has no uploaded certificate matching the "
        "key this server signs with",
        f"upload the public certificate (the .crt made with the key in certificate_path) at "
        f"{_APP} > Certificates & secrets > Certificates, and set certificate_thumbprint to the "
        "Thumbprint Entra shows beside it",
    )
    return {
        90002: wrong_tenant,
        900023: wrong_tenant,
        90033: _Diagnosis(
            "Entra ID is temporarily unavailable", "wait a few minutes and run doctor again"
        ),
        700016: _Diagnosis(
            f"Entra ID has no app with the client id {client} in this tenant",
            f"set [tenant] client_id to the Application (client) ID at {_APP} > Overview; if it "
            "is right, check tenant_id names the tenant the app was registered in",
        ),
        7000215: wrong_secret,
        7000222: _Diagnosis(
            "the client secret has expired",
            f"at {_APP} > Certificates & secrets > Client secrets add a new secret, put its "
            "Value in the file named by client_secret_file, restart remote_guard, then delete "
            "the expired one; put the new expiry date in the school's IT calendar, or switch to "
            "a certificate (docs/setup-entra.md)",
        ),
        7000218: _Diagnosis(
            "no credential was sent",
            "set certificate_path and certificate_thumbprint (preferred) or client_secret_file "
            "in [tenant]",
        ),
        700027: certificate,
        700021: certificate,
        50027: certificate,
        700024: _Diagnosis(
            "Entra ID says the signed request is outside its valid time: this server's clock is "
            "wrong",
            "set the server's clock (timedatectl set-ntp true, or the NTP server of the "
            "school's network) and run doctor again",
        ),
        7000112: _Diagnosis(
            "the app registration is disabled",
            "enable it at Entra admin centre > Enterprise applications > your remote_guard app > "
            "Properties > Enabled for users to sign in = Yes",
        ),
        50126: wrong_secret,
    }


def credential_check(tenant: TenantSettings, *, now: datetime | None = None) -> Check:
    """Check the credential on this server before Entra is asked: the certificate file holds a
    key and a certificate that belong together, its thumbprint is the configured one, and it has
    not expired. A client secret can only be checked by asking Entra (the token check)."""
    now = now or datetime.now(UTC)
    if tenant.certificate_path is None:
        return Check(
            "credential",
            "App credential",
            Status.PASS,
            "client secret (only Entra can say whether it is right: see the token check; a "
            "certificate is preferred, docs/setup-entra.md)",
        )
    path = tenant.certificate_path
    try:
        pem = path.read_bytes()
    except OSError as exc:
        return Check(
            "credential",
            "App credential",
            Status.FAIL,
            f"the certificate file {path} cannot be read ({exc.strerror})",
            "make the file readable by the account remote_guard runs as (chmod 640, owned by "
            "that account or its group), or fix certificate_path",
        )
    return _certificate_check(path.name, pem, tenant.certificate_thumbprint or "", now)


def _certificate_check(name: str, pem: bytes, thumbprint: str, now: datetime) -> Check:
    title = "App credential"
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return Check(
            "credential",
            title,
            Status.FAIL,
            f"{name} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            "certificate_path must name one PEM file holding the private key and the "
            "certificate: cat remote-guard.key remote-guard.crt > remote-guard.pem",
        )
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        return Check(
            "credential",
            title,
            Status.FAIL,
            f"{name} holds no unencrypted private key (-----BEGIN PRIVATE KEY-----)",
            "put the private key in the same PEM file as the certificate, without a "
            "passphrase (openssl req ... -nodes): cat remote-guard.key remote-guard.crt > "
            "remote-guard.pem",
        )
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
        return Check(
            "credential",
            title,
            Status.FAIL,
            f"the private key in {name} does not belong to the certificate in it",
            "make the PEM file again from the key and the certificate made together "
            "(docs/setup-entra.md, step 3)",
        )
    actual = hashlib.sha1(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()  # noqa: S324 - Entra's thumbprint is SHA-1 by definition
    if actual.upper() != thumbprint.upper():
        return Check(
            "credential",
            title,
            Status.FAIL,
            f"certificate_thumbprint is {thumbprint.upper()}, but the certificate in {name} has "
            f"the thumbprint {actual.upper()}",
            f'set certificate_thumbprint = "{actual.upper()}" and check Entra lists a '
            "certificate with that thumbprint (Certificates & secrets > Certificates)",
        )
    expires = certificate.not_valid_after_utc
    day = expires.strftime("%d %b %Y")
    if expires <= now:
        return Check(
            "credential",
            title,
            Status.FAIL,
            f"the certificate in {name} expired on {day}",
            "make a new certificate (docs/setup-entra.md, step 3), upload it, set "
            "certificate_path and certificate_thumbprint, restart remote_guard, then delete the "
            "old one from Entra",
        )
    if expires - now < timedelta(days=CERTIFICATE_WARN_DAYS):
        return Check(
            "credential",
            title,
            Status.WARN,
            f"the certificate in {name} expires on {day}",
            "make and upload a new certificate before then (docs/setup-entra.md, step 3); "
            "Entra accepts both while both are uploaded",
        )
    return Check(
        "credential",
        title,
        Status.PASS,
        f"certificate {actual.upper()[:8]}..., valid until {day}",
    )


def token_failure(tenant: TenantSettings, error: GraphAuthError) -> Check:
    """The token check's FAIL line for a refusal or an unreachable identity platform."""
    text = str(error)
    code = _aadsts(text)
    if code is None and error.endpoint == "openid-configuration":
        code, text = _discovery_code(tenant, text)
    if code is not None:
        diagnosis = _diagnoses(tenant).get(code)
        if diagnosis is not None:
            return Check(
                "token",
                "Token from Entra ID",
                Status.FAIL,
                f"AADSTS{code}: {diagnosis.what}",
                diagnosis.fix,
            )
        return Check(
            "token",
            "Token from Entra ID",
            Status.FAIL,
            _first_sentence(text),
            f"look AADSTS{code} up at https://login.microsoftonline.com/error and fix what it "
            "names in [tenant] or in Entra",
        )
    if error.retryable:
        return Check(
            "token",
            "Token from Entra ID",
            Status.FAIL,
            f"cannot reach the identity platform at {tenant.authority_host}: {text}",
            "check this server reaches https://login.microsoftonline.com (firewall, web "
            "filter); behind a proxy set HTTPS_PROXY; if the filter inspects HTTPS, set "
            "[tenant] ca_bundle to its root certificate",
        )
    return Check(
        "token",
        "Token from Entra ID",
        Status.FAIL,
        _first_sentence(text),
        "check tenant_id, client_id and the credential in [tenant] (docs/setup-entra.md)",
    )


def _aadsts(text: str) -> int | None:
    match = _AADSTS.search(text)
    return int(match.group(1)) if match else None


def _discovery_code(tenant: TenantSettings, fallback: str) -> tuple[int | None, str]:
    """Ask the tenant's OpenID configuration document directly: MSAL drops Entra's answer."""
    url = f"{tenant.authority}/v2.0/.well-known/openid-configuration"
    verify: bool | str = str(tenant.ca_bundle) if tenant.ca_bundle is not None else True
    try:
        response = requests.get(url, timeout=tenant.timeout_seconds, verify=verify)
        body = response.json()
    except (requests.RequestException, ValueError):
        return None, fallback
    if not isinstance(body, dict):
        return None, fallback
    description = str(body.get("error_description", ""))
    codes = body.get("error_codes")
    if isinstance(codes, list) and codes and isinstance(codes[0], int):
        return codes[0], description or fallback
    return _aadsts(description), description or fallback


def _first_sentence(text: str) -> str:
    line = text.split("\r\n", 1)[0].split("\n", 1)[0]
    return line if len(line) <= 300 else line[:297] + "..."
