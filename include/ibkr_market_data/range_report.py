"""Render coverage, failures, corporate actions and run metrics of a date range: ``cli report``'s text.

See docs/operations.md and docs/corporate-actions.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from ibkr_market_data import coverage, repository
from ibkr_market_data.corporate_actions import IDENTITY_KINDS, describe_action, describe_identity
from ibkr_market_data.errors import BadInputError, InvalidRangeError, InvalidRunParamError
from ibkr_market_data.run_dates import parse_date_param

if TYPE_CHECKING:
    import psycopg


def parse_range(start: str | None, end: str | None, today: dt.date) -> tuple[dt.date | None, dt.date]:
    """Return the report's first date (None: the default range) and last date.

    :raises BadInputError: a malformed date, or a reversed or too long range.
    """
    try:
        first = parse_date_param(start, "FROM")
        last = parse_date_param(end, "TO") or today
    except InvalidRunParamError as exc:
        raise BadInputError(str(exc).replace("Param ", "")) from None
    if first is not None:
        try:
            coverage.check_report_range(first, last)
        except InvalidRangeError as exc:
            raise BadInputError(str(exc).replace("'from'", "FROM").replace("'to'", "TO")) from None
    return first, last


def default_start(conn: psycopg.Connection, end: dt.date) -> dt.date:
    """Return the first of the last 30 trading dates to ``end`` of the exchanges with active symbols."""
    exchanges = coverage.known_exchanges(row[0] for row in repository.active_symbol_counts(conn))
    return coverage.default_range(exchanges or ["NYSE"], end)[0]


def _number(value: float | None, digits: int = 3) -> str:
    """Return ``value`` with ``digits`` decimals, ``-`` when there is none."""
    return "-" if value is None else f"{value:.{digits}f}"


def render(conn: psycopg.Connection, start: dt.date, end: dt.date, out: TextIO) -> None:
    """Write the report of ``start``..``end`` to ``out``."""
    rows = coverage.coverage(conn, start, end)
    dates = sorted({row.date for row in rows})
    print(f"Market data {start}..{end}: {len(dates)} trading dates", file=out)
    if not rows:
        print(
            "No active symbol trades in the range "
            "(none loaded? `python -m ibkr_market_data.cli load-symbols`)",
            file=out,
        )
    print(
        f"\n{'exchange':<10}{'expected':>10}{'stored':>10}{'failed':>8}{'no data':>9}{'missing':>9}"
        "  complete",
        file=out,
    )
    for exchange in sorted({row.exchange for row in rows}):
        mine = [row for row in rows if row.exchange == exchange]
        complete = sum(1 for row in mine if row.complete)
        totals = [
            sum(getattr(row, key) for row in mine)
            for key in ("expected", "stored", "failed", "no_data", "missing")
        ]
        print(
            f"{exchange:<10}{totals[0]:>10}{totals[1]:>10}{totals[2]:>8}{totals[3]:>9}{totals[4]:>9}"
            f"  {complete}/{len(mine)} dates",
            file=out,
        )
    incomplete = [row for row in rows if not row.complete and row.expected]
    if incomplete:
        listed = ", ".join(f"{row.exchange} {row.date} ({row.missing})" for row in incomplete[:12])
        more = f" and {len(incomplete) - 12} more" if len(incomplete) > 12 else ""
        print(f"\nIncomplete (missing symbols): {listed}{more}", file=out)

    failures = repository.failures(conn, start, end, limit=1000)
    print(f"\nFailed attempts: {len(failures)}", file=out)
    by_code: dict[object, int] = {}
    for failure in failures:
        by_code[failure["error_code"]] = by_code.get(failure["error_code"], 0) + 1
    for code, count in sorted(by_code.items(), key=lambda item: -item[1]):
        example = next(f for f in failures if f["error_code"] == code)
        print(
            f"  IB {code if code is not None else '-':<5} {count:>5}  "
            f"e.g. {example['symbol']} {example['date']}: "
            f"{(example['error_message'] or '')[:80]}",
            file=out,
        )

    render_corporate_actions(conn, start, end, out)

    metrics = [
        row
        for row in repository.run_metrics(conn, start, end, limit=1000)
        if row["exchange"] == repository.ALL_EXCHANGES
    ]
    print(f"\nRuns started in the range: {len(metrics)}", file=out)
    if metrics:
        print(
            f"  {'run':<44}{'requests':>9}{'bars':>8}{'bars/s':>8}{'p50 s':>8}{'p95 s':>8}"
            f"{'retries':>8}{'wall s':>9}{'failed':>7}",
            file=out,
        )
    for row in metrics:
        wall = row["wall_seconds"]
        print(
            f"  {row['run_id'][:43]:<44}{row['requests']:>9}{row['bars']:>8}"
            f"{_number(row['bars'] / wall if wall else None, 1):>8}{_number(row['latency_p50']):>8}"
            f"{_number(row['latency_p95']):>8}{row['retries']:>8}{_number(wall, 1):>9}{row['failed']:>7}",
            file=out,
        )


def render_corporate_actions(conn: psycopg.Connection, start: dt.date, end: dt.date, out: TextIO) -> None:
    """Write the corporate actions effective in the range, the identity changes and the inactive symbols."""
    actions = repository.corporate_actions_between(conn, start, end)
    print(f"\nCorporate actions effective in the range: {len(actions)}", file=out)
    for action in actions:
        print(f"  {action['effective_session']}  {action['symbol']:<8} {describe_action(action)}", file=out)
    identity = [action for action in actions if action["kind"] in IDENTITY_KINDS]
    print(f"\nIdentity changes in the range: {len(identity)}", file=out)
    for action in identity:
        print(
            f"  {action['symbol']:<8} {describe_identity(action)} from {action['effective_session']}",
            file=out,
        )
    inactive = repository.inactive_symbols(conn)
    recent = [row for row in inactive if _inactive_in(row, start, end)]
    print(f"\nInactive symbols: {len(inactive)}; {len(recent)} became inactive in the range", file=out)
    for row in recent:
        since = row["inactive_since"].date().isoformat() if row["inactive_since"] else "-"
        print(
            f"  {row['symbol']:<8} {row['exchange']:<7} since {since}: "
            f"{row['reason'] or 'no reason recorded'}; {row['daily_bars']} daily bars kept",
            file=out,
        )


def _inactive_in(row: Mapping[str, Any], start: dt.date, end: dt.date) -> bool:
    since = row["inactive_since"]
    return (since is not None and start <= since.date() <= end) or (
        row["last_session"] is not None and start <= row["last_session"] <= end
    )
