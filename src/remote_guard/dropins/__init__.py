"""Monitoring drop-ins: SLT visits to live remote sessions, their calendar events, outcomes and coverage."""
