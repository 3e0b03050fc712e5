import datetime as dt

from airflow.timetables.base import DataInterval, TimeRestriction
from pendulum import UTC, DateTime

from ibkr_market_data.timetables import ExchangeSessionTimetable

TIMETABLE = ExchangeSessionTimetable(exchanges=("ASX", "NASDAQ"), delay_minutes=30)


def utc(*args):
    return DateTime(*args, tzinfo=UTC)


def test_run_is_after_the_last_close_of_the_trading_date():
    info = TIMETABLE.run_info(dt.date(2025, 1, 15))
    assert info.logical_date == utc(2025, 1, 15)
    assert info.run_after == utc(2025, 1, 15, 21, 30)  # 16:00 New York + 30 min
    # MLK day: only ASX trades, so the run follows the ASX close (16:00 Sydney = 05:00 UTC).
    assert TIMETABLE.run_info(dt.date(2025, 1, 20)).run_after == utc(2025, 1, 20, 5, 30)


def test_catchup_walks_every_trading_date_of_either_exchange():
    restriction = TimeRestriction(earliest=utc(2025, 1, 17), latest=utc(2025, 1, 28), catchup=True)
    info, dates = None, []
    while (
        info := TIMETABLE.next_dagrun_info(
            last_automated_data_interval=info.data_interval if info else None, restriction=restriction
        )
    ) is not None:
        dates.append(info.logical_date.date())
    # 18/19 Jan weekend; 20 Jan ASX only; 25/26 weekend; 27 Jan NASDAQ only (Australia Day).
    assert dates == [dt.date(2025, 1, d) for d in (17, 20, 21, 22, 23, 24, 27, 28)]


def test_without_catchup_a_backfill_does_not_cause_a_burst():
    # The last automated run is an old backfilled date: the next run is the latest completed date.
    old = DataInterval(utc(2025, 1, 15), utc(2025, 1, 15, 21, 30))
    info = TIMETABLE.next_dagrun_info(
        last_automated_data_interval=old,
        restriction=TimeRestriction(earliest=utc(2025, 1, 1), latest=None, catchup=False),
    )
    expected = TIMETABLE.latest_completed(dt.datetime.now(dt.UTC))
    assert info.logical_date.date() == expected
    assert info.logical_date.date() > dt.date(2025, 1, 16)


def test_manual_run_interval_starts_at_the_latest_completed_date():
    interval = TIMETABLE.infer_manual_data_interval(run_after=utc(2025, 1, 15, 10))
    assert interval.start == utc(2025, 1, 14)


def test_serialization_round_trip():
    restored = ExchangeSessionTimetable.deserialize(TIMETABLE.serialize())
    assert restored.exchanges == ("ASX", "NASDAQ") and restored.delay_minutes == 30
