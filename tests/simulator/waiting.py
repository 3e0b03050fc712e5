"""Waiting for the client side without sleeping: run ib_insync's loop until a condition holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def run_until(ib: Any, condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Process the client's network events until ``condition()`` is truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"Condition not met within {timeout:g}s")
        ib.waitOnUpdate(timeout=min(remaining, 0.1))
