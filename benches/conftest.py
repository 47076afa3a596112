"""Benchmarks run against the same real servers as the tests."""

pytest_plugins = ["tests.conftest", "tests.ledger.conftest"]
