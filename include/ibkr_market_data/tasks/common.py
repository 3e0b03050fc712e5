"""What the daily and backfill task bodies share: the database, the IB session, failure classes."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from ibkr_market_data.settings import IBKR_CONN_ID, MARKET_DATA_CONN_ID

log = logging.getLogger(__name__)


class PermanentFailure(Exception):
    """A failure that a retry cannot mend; the task raises it as AirflowFailException."""


def market_db() -> Any:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=MARKET_DATA_CONN_ID)


def as_name_list(value: object) -> list[str]:
    """A param given as a list, or as one comma-separated string, as clean upper-case names."""
    if value is None or value == "":
        return []
    items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    return [str(item).strip().upper() for item in items if str(item).strip()]


def names(symbols: Iterable[str], limit: int = 20) -> str:
    """``A, B, C and 12 more``: symbol lists for log lines and errors."""
    listed = list(symbols)
    more = f" and {len(listed) - limit} more" if len(listed) > limit else ""
    return ", ".join(listed[:limit]) + more


def fail_on_problems(
    what: str,
    failures: Iterable[tuple[str, str, int | None]],
    unfinished: Iterable[str],
    unfinished_label: str,
) -> None:
    """Log each failed symbol; raise PermanentFailure naming the failed and the unfinished ones.

    ``failures`` are (symbol, reason, IB code); ``unfinished`` are symbols planned but with no final
    status in ``collection_logs`` (their task never ran to the end).
    """
    failures, unfinished = list(failures), list(unfinished)
    for symbol, reason, code in failures:
        log.error("%s failed (IB code %s): %s", symbol, code, reason)
    problems = []
    if failures:
        problems.append(f"{len(failures)} symbols failed: {names(row[0] for row in failures)}")
    if unfinished:
        problems.append(f"{len(unfinished)} {unfinished_label} have no outcome: {names(unfinished)}")
    if problems:
        raise PermanentFailure(f"{what}: " + "; ".join(problems))


def run_context() -> Any:
    """The ``RunContext`` (dag, run, try) of the task instance running now."""
    from airflow.sdk import get_current_context

    from ibkr_market_data.repository import RunContext

    context = get_current_context()
    return RunContext(
        dag_id=context["dag"].dag_id, run_id=context["run_id"], try_number=context["ti"].try_number
    )


@contextmanager
def failing_without_retry() -> Iterator[None]:
    """Turn PermanentFailure into Airflow's AirflowFailException: the task fails at once, no retry."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except PermanentFailure as exc:
        raise AirflowFailException(str(exc)) from exc


@contextmanager
def ib_session(paced: bool = False) -> Iterator[tuple[Any, Any]]:
    """A market-data connection and an IbkrHook whose client id is leased on that connection.

    The lease is a session-level advisory lock, so it holds across the connection's commits and
    rollbacks and dies with it. ``paced``: small-bar and head-timestamp requests wait their turn
    in the shared pacing ledger. A CollectionFailed that no retry can mend, and a bad extra of the
    ibkr connection, become PermanentFailure.
    """
    import functools

    from ibkr_market_data.client_ids import PostgresClientIdLease
    from ibkr_market_data.collect import CollectionFailed
    from ibkr_market_data.hooks.ibkr import IbkrHook
    from ibkr_market_data.hooks.ibkr_config import IbkrConfigError
    from ibkr_market_data.pacing import PostgresPacer

    pg = market_db()
    conn = pg.get_conn()
    try:
        hook = IbkrHook(
            IBKR_CONN_ID,
            client_id_lease=functools.partial(PostgresClientIdLease, conn),
            pacer=PostgresPacer(pg.get_conn) if paced else None,
        )
        with hook:
            yield conn, hook
    except CollectionFailed as exc:
        if not exc.retryable:
            raise PermanentFailure(str(exc)) from exc
        raise
    except IbkrConfigError as exc:
        raise PermanentFailure(str(exc)) from exc
    finally:
        conn.close()
