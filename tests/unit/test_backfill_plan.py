"""Gap detection and request planning over the exchanges' calendars (pure, no database, no IB)."""

import datetime as dt

import pytest

from ibkr_market_data import calendars
from ibkr_market_data.backfill_plan import (
    MAX_REQUEST_DAYS,
    BackfillRange,
    GapReport,
    SessionRun,
    check_backfill_range,
    plan_requests,
    report_gaps,
    request_targets,
    symbol_gaps,
)
from ibkr_market_data.errors import InvalidRunParamError
from ibkr_market_data.repository import SymbolRow

NOW = dt.datetime(2025, 6, 30, 12, tzinfo=dt.UTC)
AAPL = SymbolRow(1, "AAPL", "SMART", "NASDAQ", "USD", "STK", 265598, 1, True)
BHP = SymbolRow(2, "BHP", "ASX", "ASX", "AUD", "STK", 4036812, 1, True)
GYG = SymbolRow(3, "GYG", "ASX", "ASX", "AUD", "STK", 700000001, 2, True)
#: Listed on ASX, but IB names a primary exchange we have no calendar for.
ON_CHIXAU = SymbolRow(4, "XRO", "ASX", "CHIXAU", "AUD", "STK", 700000002, 2, True)

MLK_DAY = dt.date(2025, 1, 20)  # US closed, ASX open
AUSTRALIA_DAY = dt.date(2025, 1, 27)  # ASX closed, US open


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def sessions(exchange: str, start: str, end: str) -> list[dt.date]:
    return calendars.sessions_between(exchange, d(start), d(end))


def test_a_gap_in_the_middle_is_one_request_for_that_session():
    stored = [d("2025-01-13"), d("2025-01-14"), d("2025-01-16"), d("2025-01-17")]
    gaps = symbol_gaps(AAPL, d("2025-01-13"), d("2025-01-17"), NOW, stored)

    assert gaps.missing == [d("2025-01-15")]
    assert gaps.runs == [SessionRun(d("2025-01-15"), d("2025-01-15"), 1)]
    [target] = request_targets(AAPL, gaps)
    assert (target.duration, target.end_date_time) == ("1 D", "20250115 23:59:59 America/New_York")
    assert target.first_session_date == target.session_date == d("2025-01-15")


@pytest.mark.parametrize(
    ("stored", "missing"),
    [
        (["2025-01-15", "2025-01-16", "2025-01-17"], ["2025-01-13", "2025-01-14"]),  # leading edge
        (["2025-01-13", "2025-01-14", "2025-01-15"], ["2025-01-16", "2025-01-17"]),  # trailing edge
    ],
)
def test_a_gap_at_either_edge_of_the_range_ends_its_request_at_its_last_session(stored, missing):
    gaps = symbol_gaps(AAPL, d("2025-01-13"), d("2025-01-17"), NOW, [d(day) for day in stored])

    assert gaps.missing == [d(day) for day in missing]
    [target] = request_targets(AAPL, gaps)
    assert target.duration == "2 D"
    assert target.session_date == d(missing[-1])
    assert target.first_session_date == d(missing[0])


def test_gaps_at_both_edges_share_one_request_and_the_stored_bars_between_are_fetched_again():
    stored = [d("2025-01-14"), d("2025-01-15"), d("2025-01-16")]
    gaps = symbol_gaps(AAPL, d("2025-01-13"), d("2025-01-17"), NOW, stored)

    assert [(run.first, run.last) for run in gaps.runs] == [
        (d("2025-01-13"), d("2025-01-13")),
        (d("2025-01-17"), d("2025-01-17")),
    ]
    [request] = gaps.requests
    assert (request.first, request.last, request.duration, request.runs, request.missing) == (
        d("2025-01-13"),
        d("2025-01-17"),
        "5 D",
        2,
        2,
    )


def test_a_us_market_closure_outside_the_regular_holidays_is_not_missing():
    # 2025-01-09: US markets closed for the national day of mourning; ASX traded.
    assert d("2025-01-09") not in symbol_gaps(AAPL, d("2025-01-06"), d("2025-01-10"), NOW, stored=[]).missing
    assert d("2025-01-09") in symbol_gaps(BHP, d("2025-01-06"), d("2025-01-10"), NOW, stored=[]).missing


@pytest.mark.parametrize(
    ("row", "holiday_here", "holiday_elsewhere"),
    [(AAPL, MLK_DAY, AUSTRALIA_DAY), (BHP, AUSTRALIA_DAY, MLK_DAY)],
    ids=["NASDAQ", "ASX"],
)
def test_a_holiday_is_never_missing_but_the_other_exchanges_holiday_is(row, holiday_here, holiday_elsewhere):
    gaps = symbol_gaps(row, d("2025-01-17"), d("2025-01-28"), NOW, stored=[])

    assert holiday_here not in gaps.missing
    assert holiday_elsewhere in gaps.missing
    assert gaps.missing == sessions(row.primary_exchange, "2025-01-17", "2025-01-28")
    assert len(gaps.runs) == 1 and len(gaps.requests) == 1
    assert gaps.requests[0].duration == "12 D"


@pytest.mark.parametrize(
    ("row", "missing"),
    [(AAPL, ["2025-01-17", "2025-01-21"]), (BHP, ["2025-01-24", "2025-01-28"])],
    ids=["NASDAQ-over-MLK", "ASX-over-Australia-Day"],
)
def test_sessions_either_side_of_a_holiday_are_one_contiguous_run(row, missing):
    everything = sessions(row.primary_exchange, "2025-01-13", "2025-01-31")
    stored = [day for day in everything if day.isoformat() not in missing]
    gaps = symbol_gaps(row, d("2025-01-13"), d("2025-01-31"), NOW, stored)

    assert gaps.missing == [d(day) for day in missing]
    assert gaps.runs == [SessionRun(d(missing[0]), d(missing[1]), 2)]


def test_a_symbol_listed_mid_range_misses_nothing_before_its_first_available_date():
    listing = d("2025-06-16")
    gaps = symbol_gaps(GYG, d("2025-06-02"), d("2025-06-27"), NOW, stored=[], first_available=listing)

    assert gaps.missing == sessions("ASX", "2025-06-16", "2025-06-27")
    assert gaps.known_no_data == len(sessions("ASX", "2025-06-02", "2025-06-13"))
    [target] = request_targets(GYG, gaps)
    assert target.first_session_date == listing
    assert target.end_date_time == "20250627 23:59:59 Australia/Sydney"


def test_partially_filled_data_and_known_no_data_sessions_leave_only_the_rest_missing():
    everything = sessions("NASDAQ", "2025-02-03", "2025-02-28")
    stored = everything[:5] + everything[10:]
    no_data = everything[5:7]
    gaps = symbol_gaps(AAPL, d("2025-02-03"), d("2025-02-28"), NOW, stored, no_data)

    assert gaps.missing == everything[7:10]
    assert (gaps.stored, gaps.known_no_data, gaps.sessions) == (len(stored), 2, len(everything))


def test_a_session_that_has_not_closed_is_not_missing_yet():
    during_the_session = dt.datetime(2025, 1, 15, 18, tzinfo=dt.UTC)  # 13:00 in New York
    gaps = symbol_gaps(AAPL, d("2025-01-13"), d("2025-01-15"), during_the_session, stored=[])

    assert gaps.missing == [d("2025-01-13"), d("2025-01-14")]


def test_nothing_missing_plans_no_request():
    everything = sessions("ASX", "2025-03-03", "2025-03-31")
    gaps = symbol_gaps(BHP, d("2025-03-03"), d("2025-03-31"), NOW, everything)

    assert gaps.complete and gaps.runs == [] and gaps.requests == []


def test_a_run_longer_than_a_year_is_split_into_windows_of_at_most_365_days():
    gaps = symbol_gaps(AAPL, d("2023-01-01"), d("2025-06-27"), NOW, stored=[])
    everything = sessions("NASDAQ", "2023-01-01", "2025-06-27")

    assert len(gaps.runs) == 1
    assert len(gaps.requests) == 3  # 908 calendar days
    assert all(request.days <= MAX_REQUEST_DAYS for request in gaps.requests)
    covered = [day for r in gaps.requests for day in everything if r.first <= day <= r.last]
    assert covered == everything, "every session in exactly one window"
    assert gaps.requests[-1].last == everything[-1]
    assert all(target.duration.endswith(" D") for target in request_targets(AAPL, gaps))


def test_a_calendar_year_is_one_request():
    gaps = symbol_gaps(AAPL, d("2024-01-01"), d("2024-12-31"), NOW, stored=[])

    [request] = gaps.requests
    assert (request.first, request.last, request.duration) == (d("2024-01-02"), d("2024-12-31"), "365 D")


def test_runs_further_apart_than_one_window_get_a_request_each():
    everything = sessions("NASDAQ", "2024-01-01", "2025-03-31")
    missing = [d("2024-01-02"), d("2024-06-03"), d("2025-03-03")]
    requests = plan_requests(everything, missing)

    assert [(r.first, r.last, r.runs) for r in requests] == [
        (d("2024-01-02"), d("2024-06-03"), 2),
        (d("2025-03-03"), d("2025-03-03"), 1),
    ]


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2025-03-10", "2025-03-01", "'start_date' 2025-03-10 is after 'end_date' 2025-03-01"),
        ("2025-06-01", "2025-07-15", "'end_date' is 2025-07-15, in the future"),
        ("2025-07-02", "2025-07-15", "'start_date' is 2025-07-02, in the future"),
        ("2004-12-01", "2005-02-01", "before 2005-01-01, the earliest 1 day bars"),
    ],
)
def test_a_bad_range_is_refused_naming_the_param(start, end, message):
    with pytest.raises(InvalidRunParamError, match=message):
        check_backfill_range(d(start), d(end), today=d("2025-07-01"))


def test_the_gap_report_names_each_symbols_runs_and_requests():
    everything = sessions("ASX", "2025-01-13", "2025-01-31")
    report = GapReport(
        BackfillRange(d("2025-01-13"), d("2025-01-31"), ("ASX", "NASDAQ")),
        [
            symbol_gaps(BHP, d("2025-01-13"), d("2025-01-31"), NOW, everything[:8]),
            symbol_gaps(
                AAPL, d("2025-01-13"), d("2025-01-31"), NOW, sessions("NASDAQ", "2025-01-13", "2025-01-31")
            ),
        ],
    )

    assert report.totals()["symbols_with_gaps"] == 1
    assert report.totals()["requests"] == 1
    lines = report.lines()
    assert lines[0].startswith("Gaps 2025-01-13..2025-01-31 on ASX, NASDAQ: 2 symbols")
    assert lines[0].endswith("-> 1 requests")
    assert lines[1] == "  BHP (ASX): 6 missing [2025-01-23..2025-01-31] -> 9 D ending 2025-01-31"
    assert len(lines) == 2


def test_a_symbol_on_an_exchange_without_a_calendar_is_skipped_and_the_others_get_their_gaps():
    request = BackfillRange(d("2025-01-13"), d("2025-01-17"), ("ASX", "NASDAQ"))
    report = report_gaps(
        request,
        [BHP, ON_CHIXAU, AAPL],
        NOW,
        stored={AAPL.id: sessions("NASDAQ", "2025-01-13", "2025-01-16")},
        no_data={},
        first_available={},
    )

    assert [(gaps.symbol, len(gaps.missing)) for gaps in report.symbols] == [("BHP", 5), ("AAPL", 1)]
    [skip] = report.skips
    assert (skip.symbol_id, skip.symbol) == (ON_CHIXAU.id, "XRO")
    assert skip.reason.startswith("No trading calendar for exchange 'CHIXAU'; known: AMEX, ARCA, ASX")
    assert report.lines()[-1] == f"  XRO: skipped, {skip.reason}"


def test_a_symbol_is_expected_only_inside_its_universe_memberships():
    from ibkr_market_data.universe import Membership

    periods = [Membership("nasdaq100", None, d("2025-03-07")), Membership("etfs", d("2025-03-24"), None)]
    gaps = symbol_gaps(AAPL, d("2025-03-03"), d("2025-03-28"), NOW, stored=[], memberships=periods)
    assert gaps.missing == sessions("NASDAQ", "2025-03-03", "2025-03-07") + sessions(
        "NASDAQ", "2025-03-24", "2025-03-28"
    )
    assert gaps.sessions == 10 and len(gaps.runs) == 2
    # No membership rows: every session is expected, as before.
    assert symbol_gaps(AAPL, d("2025-03-03"), d("2025-03-28"), NOW, stored=[]).sessions == 20
