"""How several poller processes share one tenant's polling through the database.

``lease.py`` holds the leases themselves (claim, renew, release, fence); ``work.py`` says what
work there is (the tenant's mailbox shards and its tenant-wide part) and runs the worker loop
that ``remote-guard poll --worker`` starts. ``docs/operations.md`` explains how to run several
workers; ``docs/architecture.md`` why the work is cut the way it is.
"""
