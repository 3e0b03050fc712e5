"""What a run's report says is stored for its trading date, whichever run stored it."""

from __future__ import annotations

import datetime as dt

from ibkr_market_data import repository
from ibkr_market_data.bars import DAILY_TIMEFRAME
from ibkr_market_data.daily_plan import session_timestamp
from ibkr_market_data.repository import AttemptStatus, RunContext
from ibkr_market_data.run_summary import SessionCoverage, read_session_coverage
from ibkr_market_data_dev.simulated_ib import stored_bar

#: A Monday both the ASX and the US trade.
DAY = dt.date(2025, 6, 23)


def test_a_run_that_skipped_everything_reports_the_date_as_stored(db_conn, small_universe, tws_simulator):
    rows = repository.select_symbols(db_conn)
    stored_earlier = [row for row in rows if row.symbol != "MSFT"]
    for row in stored_earlier:
        repository.upsert_bars(
            db_conn, row.id, DAILY_TIMEFRAME, [stored_bar(tws_simulator.model.daily_bar(row.symbol, DAY))]
        )
    # This run only found them stored: every attempt is a skip, none brought a bar.
    run = RunContext("daily_market_data", "manual__later")
    window = session_timestamp(DAY)
    repository.log_skipped(
        db_conn, run, [(row.id, "already collected") for row in rows], DAILY_TIMEFRAME, window, window
    )
    db_conn.commit()

    assert repository.run_summary(db_conn, run.dag_id, run.run_id) == {AttemptStatus.SKIPPED: len(rows)}
    assert read_session_coverage(db_conn, run.dag_id, run.run_id) == [
        SessionCoverage(DAY, stored=len(stored_earlier), expected=len(rows))
    ]
    assert read_session_coverage(db_conn, run.dag_id, "a run with no attempts") == []
