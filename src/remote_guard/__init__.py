"""remote_guard: checks remote-learning sessions on Microsoft Teams against a school's code of practice."""

__version__ = "0.1.0"
