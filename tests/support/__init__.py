"""Shared test support: helpers every tier may import as ``tests.support``."""

from __future__ import annotations

import os

import pytest

# CI sets this so that a missing system package (Chromium, bubblewrap, the
# PostgreSQL server) fails the run instead of silently skipping tests.
REQUIRE_ALL = os.environ.get("CREWBOARD_TEST_REQUIRE_ALL") == "1"


def need(condition: object, reason: str) -> None:
    """Skip the calling test with ``reason`` unless ``condition`` holds; under
    CREWBOARD_TEST_REQUIRE_ALL=1 fail instead."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required by CREWBOARD_TEST_REQUIRE_ALL=1: {reason}")
    pytest.skip(reason)
