"""Every request the simulator received, with its outcome, queryable from tests.

The outcomes a record can end with, and how a test waits for one: docs/simulator.md#request-log.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

KIND_HISTORICAL = "historical"
KIND_CONTRACT_DETAILS = "contract_details"
KIND_HEAD_TIMESTAMP = "head_timestamp"

PENDING = "pending"


@dataclass
class RequestRecord:
    """One request: who sent it, what it asked for, and its outcome (``pending`` until answered)."""

    client_id: int
    req_id: int
    kind: str
    symbol: str
    con_id: int
    exchange: str = ""
    primary_exchange: str = ""
    bar_size: str = ""
    duration: str = ""
    end_date_time: str = ""
    what_to_show: str = ""
    use_rth: bool | None = None
    received_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    outcome: str = PENDING
    error_code: int | None = None
    error_message: str = ""
    answered_at: dt.datetime | None = None
    #: The client's TCP port: which process sent it, for a test that kills one.
    client_port: int = 0

    @property
    def bar_count(self) -> int | None:
        """Return the number of bars sent, or None if the request was not answered with bars."""
        if self.outcome.startswith("bars:"):
            return int(self.outcome.removeprefix("bars:"))
        return None


@dataclass(frozen=True)
class Notice:
    """A message of no request (reqId -1) sent to one client: 1100, 2105, 326, ..."""

    client_id: int | None
    code: int
    sent_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


class RequestLog:
    """Thread-safe, append-only lists of :class:`RequestRecord` and :class:`Notice`. Queries return copies."""

    def __init__(self) -> None:
        self._records: list[RequestRecord] = []
        self._notices: list[Notice] = []
        self._changed = threading.Condition()

    def add(self, record: RequestRecord) -> RequestRecord:
        """Append ``record`` and return it."""
        with self._changed:
            self._records.append(record)
            self._changed.notify_all()
        return record

    def finish(
        self, record: RequestRecord, outcome: str, error_code: int | None = None, error_message: str = ""
    ) -> None:
        """Set a record's outcome; only a pending record changes (the first outcome is final)."""
        with self._changed:
            if record.outcome != PENDING:
                return
            record.outcome = outcome
            record.error_code = error_code
            record.error_message = error_message
            record.answered_at = dt.datetime.now(dt.UTC)
            self._changed.notify_all()

    def records(self, kind: str | None = None, **filters: Any) -> list[RequestRecord]:
        """Return copies of the records of ``kind`` whose attributes equal ``filters``, oldest first."""
        with self._changed:
            return [
                replace(record)
                for record in self._records
                if (kind is None or record.kind == kind)
                and all(getattr(record, name) == value for name, value in filters.items())
            ]

    def historical(self, **filters: Any) -> list[RequestRecord]:
        """Return copies of the historical-data records matching ``filters``, oldest first."""
        return self.records(KIND_HISTORICAL, **filters)

    def contract_details(self, **filters: Any) -> list[RequestRecord]:
        """Return copies of the contract-details records matching ``filters``, oldest first."""
        return self.records(KIND_CONTRACT_DETAILS, **filters)

    def head_timestamps(self, **filters: Any) -> list[RequestRecord]:
        """Return copies of the head-timestamp records matching ``filters``, oldest first."""
        return self.records(KIND_HEAD_TIMESTAMP, **filters)

    def outcomes(self, kind: str | None = None, **filters: Any) -> list[str]:
        """Return the outcomes of the records of ``kind`` matching ``filters``, oldest first."""
        return [record.outcome for record in self.records(kind, **filters)]

    def add_notice(self, client_id: int | None, code: int) -> None:
        """Record that notice ``code`` was sent to ``client_id`` (None: before its startApi was accepted)."""
        with self._changed:
            self._notices.append(Notice(client_id, code))
            self._changed.notify_all()

    def notices(self, code: int | None = None) -> list[Notice]:
        """Return the notices sent (of ``code``), oldest first."""
        with self._changed:
            return [notice for notice in self._notices if code is None or notice.code == code]

    def __len__(self) -> int:
        with self._changed:
            return len(self._records)

    def clear(self) -> None:
        """Forget every record and notice."""
        with self._changed:
            self._records.clear()
            self._notices.clear()

    def wait_until(self, predicate: Callable[[RequestLog], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate(self)`` holds (re-checked on every change) or ``timeout`` passes.

        Return whether it held.
        """
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=timeout)
        while True:
            if predicate(self):
                return True
            remaining = (deadline - dt.datetime.now(dt.UTC)).total_seconds()
            if remaining <= 0:
                return False
            with self._changed:
                self._changed.wait(min(remaining, 0.1))
