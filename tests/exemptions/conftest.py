"""The rule tests' known-good lesson, reused for exemption matching."""

from tests.rules.conftest import lesson

__all__ = ["lesson"]
