"""A timetable with one run per trading date, after the last close among the exchanges trading it.

A run's logical date is midnight UTC of its trading date, so ``airflow backfill create`` with bare
dates covers exactly those trading dates. See docs/daily-dag.md.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction, Timetable
from pendulum import UTC, DateTime, instance

from ibkr_market_data import calendars


def _midnight_utc(day: dt.date) -> DateTime:
    """Return the logical date of trading date ``day``."""
    return DateTime(day.year, day.month, day.day, tzinfo=UTC)


class ExchangeSessionTimetable(Timetable):
    """Run each trading date of ``exchanges`` ``delay_minutes`` after its last close; skip other dates."""

    def __init__(self, exchanges: tuple[str, ...] | list[str] = ("ASX", "NASDAQ"), delay_minutes: int = 30):
        self.exchanges = tuple(sorted(set(exchanges)))
        self.delay_minutes = int(delay_minutes)
        self.description = (
            f"{self.delay_minutes} min after the last close of each trading date "
            f"of {', '.join(self.exchanges)}"
        )

    @property
    def summary(self) -> str:
        """The short text the UI shows for the schedule."""
        return f"sessions of {'+'.join(self.exchanges)}"

    def serialize(self) -> dict[str, Any]:
        """Return the timetable's arguments, for the serialized DAG."""
        return {"exchanges": list(self.exchanges), "delay_minutes": self.delay_minutes}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> ExchangeSessionTimetable:
        """Return the timetable ``serialize`` made ``data`` from."""
        return cls(exchanges=data["exchanges"], delay_minutes=data["delay_minutes"])

    def validate(self) -> None:
        """Check that every exchange has a calendar; raise UnknownExchangeError otherwise."""
        for exchange in self.exchanges:
            calendars.calendar_code(exchange)

    # -- the schedule -------------------------------------------------------------------------

    def run_after(self, trading_date: dt.date) -> DateTime:
        """Return when the run of ``trading_date`` is due: ``delay`` after its latest close."""
        closes = [
            calendars.session_close(exchange, trading_date)
            for exchange in self.exchanges
            if calendars.is_session(exchange, trading_date)
        ]
        if not closes:
            raise ValueError(f"{trading_date} is no session of {', '.join(self.exchanges)}")
        return instance(max(closes) + dt.timedelta(minutes=self.delay_minutes)).in_timezone(UTC)

    def run_info(self, trading_date: dt.date) -> DagRunInfo:
        """Return the run of ``trading_date``: from its midnight UTC to when it is due."""
        return DagRunInfo.interval(start=_midnight_utc(trading_date), end=self.run_after(trading_date))

    def next_trading_date(self, after: dt.date) -> dt.date | None:
        """Return the first date after ``after`` that some exchange trades, or None within a fortnight."""
        horizon = after + dt.timedelta(days=15)
        upcoming = [
            sessions[0]
            for exchange in self.exchanges
            if (sessions := calendars.sessions_between(exchange, after + dt.timedelta(days=1), horizon))
        ]
        return min(upcoming) if upcoming else None

    def latest_completed(self, now: dt.datetime) -> dt.date:
        """Return the latest trading date whose run is due by ``now`` (its closes plus the delay passed)."""
        return calendars.latest_completed_trading_date(
            self.exchanges, now - dt.timedelta(minutes=self.delay_minutes)
        )

    def infer_manual_data_interval(self, *, run_after: DateTime) -> DataInterval:
        """Return a manual run's interval: the latest trading date due by ``run_after``."""
        return DataInterval(start=_midnight_utc(self.latest_completed(run_after)), end=run_after)

    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        """Return the next scheduled run; without catchup, never one before the latest due date."""
        candidate: dt.date | None
        if last_automated_data_interval is not None:
            candidate = self.next_trading_date(last_automated_data_interval.start.date())
        elif restriction.earliest is not None:
            earliest = restriction.earliest.astimezone(dt.UTC)
            first_day = (
                earliest.date() if earliest.time() == dt.time() else earliest.date() + dt.timedelta(days=1)
            )
            candidate = self.next_trading_date(first_day - dt.timedelta(days=1))
        else:
            candidate = None
        if not restriction.catchup:
            latest = self.latest_completed(dt.datetime.now(dt.UTC))
            if candidate is None or candidate < latest:
                candidate = latest
        while (
            candidate is not None
            and restriction.earliest is not None
            and _midnight_utc(candidate) < restriction.earliest
        ):
            candidate = self.next_trading_date(candidate)
        if candidate is None:
            return None
        if restriction.latest is not None and _midnight_utc(candidate) > restriction.latest:
            return None
        return self.run_info(candidate)
