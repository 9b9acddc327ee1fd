"""Operations: liveness, readiness and Prometheus metrics, for the web app and a poll-only host.

``/healthz`` says the process answers (no database, no Graph). ``/readyz`` says whether it is
doing its job: the database answers, a poll finished recently, and a Graph token can be had.
``/metrics`` is the Prometheus text format: poll runs, poll durations, Graph requests and
throttling by endpoint, findings by rule and status. The web app serves them
(:mod:`remote_guard.ops.web`); ``remote-guard poll --health-port`` serves them from the poller
(:mod:`remote_guard.ops.server`).
"""
