"""Give a task its run identity and an IB session whose client id is leased in the database.

See docs/architecture.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ibkr_market_data.errors import PermanentError
from ibkr_market_data.settings import IBKR_CONN_ID
from ibkr_market_data.tasks.database import open_market_connection

if TYPE_CHECKING:
    import psycopg

    from ibkr_market_data.hooks.ibkr import IbkrHook
    from ibkr_market_data.repository import RunContext

log = logging.getLogger(__name__)


def run_context() -> RunContext:
    """Return the ``RunContext`` (dag, run, try) of the task instance running now."""
    from airflow.sdk import get_current_context

    from ibkr_market_data.repository import RunContext

    context = get_current_context()
    return RunContext(
        dag_id=context["dag"].dag_id, run_id=context["run_id"], try_number=context["ti"].try_number
    )


@contextmanager
def ib_session(paced: bool = False) -> Iterator[tuple[psycopg.Connection, IbkrHook]]:
    """Yield a market-data connection and an IbkrHook whose client id is leased on that connection.

    The lease is a session-level advisory lock: it outlives the connection's commits and rollbacks
    and dies with it.

    :param paced: small-bar and head-timestamp requests wait their turn in the shared pacing ledger.
    :raises PermanentError: a CollectionError no retry can mend, or a bad extra of the ibkr connection.
    """
    import functools

    from ibkr_market_data.client_ids import PostgresClientIdLease
    from ibkr_market_data.errors import CollectionError, IbkrConfigError
    from ibkr_market_data.hooks.ibkr import IbkrHook
    from ibkr_market_data.pacing import PostgresPacer

    conn = open_market_connection()
    try:
        hook = IbkrHook(
            IBKR_CONN_ID,
            client_id_lease=functools.partial(PostgresClientIdLease, conn),
            pacer=PostgresPacer(open_market_connection) if paced else None,
        )
        with hook:
            yield conn, hook
    except CollectionError as exc:
        if not exc.retryable:
            raise PermanentError(str(exc)) from exc
        raise
    except IbkrConfigError as exc:
        raise PermanentError(str(exc)) from exc
    finally:
        conn.close()
