"""One-to-one sessions as teachers register them: the registration, the parental consent behind
it, and withdrawals of consent (``service``); SLT's approval is recorded on the registration."""
