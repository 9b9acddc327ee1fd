"""``remote-guard doctor``: checks a configured tenant and this server, and says how to fix each
problem. See docs/setup-entra.md for the set-up it checks."""

from remote_guard.doctor.report import Check, Report, Status
from remote_guard.doctor.run import diagnose, run_doctor

__all__ = ["Check", "Report", "Status", "diagnose", "run_doctor"]
