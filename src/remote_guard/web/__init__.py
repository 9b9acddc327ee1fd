"""The web app staff sign in to: server-rendered pages and a JSON API (``/api/v1``).

Layout: ``app.create_app`` assembles it; ``auth`` signs staff in with Entra ID and gives routes
the current user; ``access`` decides who may see and do what; ``security`` keeps sessions and
checks CSRF tokens; ``people`` reads who is who from the configured Entra groups and class
teams; ``render`` fills templates; ``audit_log`` writes the audit trail; ``routes`` holds the
pages of each role and ``api`` the JSON API.
"""
