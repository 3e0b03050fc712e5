"""How ``make run`` and the test stacks log in to Airflow: all-admins, or under a configured auth manager.

With ``AIRFLOW__CORE__AUTH_MANAGER`` set to another than the simple one (FAB's), the stack keeps it and
logs in as a local ``admin`` whose password is kept in the Airflow home. See docs/production.md#auth.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
#: The user a stack under a configured auth manager creates and logs in as.
ADMIN_USER = "admin"
ADMIN_PASSWORD_FILE = "admin_password"


class Stack(Protocol):
    """What creating the admin needs of an ``AirflowStack``."""

    home: Path

    @property
    def airflow_bin(self) -> str: ...  # noqa: D102

    def environment(self) -> dict[str, str]: ...  # noqa: D102


def configured_auth_manager(env: Mapping[str, str]) -> str | None:
    """Return the auth manager ``env`` configures, None when it is the simple one or none is set."""
    value = env.get("AIRFLOW__CORE__AUTH_MANAGER", "").strip()
    return value if value and value != SIMPLE_AUTH_MANAGER else None


def admin_password(home: Path) -> str:
    """Return the local admin's password, made on first use and kept in ``home`` (owner-only)."""
    path = home / ADMIN_PASSWORD_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(16))
    return path.read_text().strip()


def credentials(home: Path) -> dict[str, str]:
    """Return the body of ``POST /auth/token`` that logs the local admin in."""
    return {"username": ADMIN_USER, "password": admin_password(home)}


def create_admin(stack: Stack) -> None:
    """Create the local admin (role Admin) with FAB's CLI, unless it exists; after ``airflow db migrate``.

    :raises RuntimeError: the CLI failed; its output's end is in the message.
    """
    password = admin_password(stack.home)
    # The password goes through stdin, never a command line: without a terminal (a new session),
    # the CLI's password prompt reads it from there.
    result = subprocess.run(
        [stack.airflow_bin, "users", "create", "--username", ADMIN_USER, "--role", "Admin"]
        + ["--firstname", "Local", "--lastname", "Admin", "--email", "admin@localhost"],
        input=f"{password}\n{password}\n",
        env=stack.environment(),
        capture_output=True,
        text=True,
        start_new_session=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"airflow users create failed: {(result.stdout + result.stderr)[-2000:]}")


def login_hint(stack: Stack) -> str:
    """Return how a person logs in to the stack's UI."""
    if configured_auth_manager(stack.environment()) is None:
        return "no login locally"
    return f"log in as {ADMIN_USER}, password in {stack.home / ADMIN_PASSWORD_FILE}"
