"""The web app staff sign in to: server-rendered pages and a JSON API (``/api/v1``).

Layout: ``app.create_app`` assembles it (nothing happens at import time); ``auth`` signs staff
in with Entra ID and gives routes the current user (``CurrentUser``, ``requires``, ``deny``);
``access`` decides who may see and do what, one function per decision; ``security`` keeps
server-side sessions behind a signed cookie and checks CSRF tokens; ``people`` reads who is who
from the configured Entra groups and class teams; ``render`` fills templates; ``audit_log``
writes the audit trail; ``context`` holds what every request can reach; ``server`` runs uvicorn;
``routes`` holds the pages of each role and ``api`` the JSON API.
"""
