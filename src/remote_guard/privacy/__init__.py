"""Children's data as UK data protection expects: retention and subject access."""
