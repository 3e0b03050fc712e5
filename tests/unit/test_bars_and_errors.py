import datetime as dt
import math
from decimal import Decimal
from types import SimpleNamespace

import pytest

from ibkr_market_data import errors
from ibkr_market_data.bars import bar_from_ib, bars_from_ib, latest_per_timestamp
from ibkr_market_data.errors import BrokenBarsError, InvalidBarError


def ib_bar(**overrides):
    fields = dict(
        date=dt.date(2025, 1, 15),
        open=10.5,
        high=11.25,
        low=10.0,
        close=11.0,
        volume=1234.0,
        average=10.8,
        barCount=42,
    )
    fields.update(overrides)
    return SimpleNamespace(**fields)


def test_prices_become_exact_decimals():
    bar = bar_from_ib(ib_bar(open=654321.12, high=700000.5, low=600000.01, close=650000.0))
    assert bar.open == Decimal("654321.12")
    assert bar.low == Decimal("600000.01")
    penny = bar_from_ib(ib_bar(open=0.0005, high=0.0007, low=0.0004, close=0.0006, volume=3.5e9))
    assert penny.low == Decimal("0.0004")
    assert penny.volume == 3_500_000_000
    assert bar.timestamp == dt.datetime(2025, 1, 15)


def test_intraday_times_are_stored_as_utc():
    sydney = dt.timezone(dt.timedelta(hours=11))
    bar = bar_from_ib(ib_bar(date=dt.datetime(2025, 1, 15, 10, 0, tzinfo=sydney)))
    assert bar.timestamp == dt.datetime(2025, 1, 14, 23, 0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"high": 9.0}, "high 9.0 is below low 10.0"),
        ({"volume": -5.0}, "volume -5 is negative"),
        ({"close": math.nan}, "close is nan"),
        ({"low": 0.0, "open": 0.0}, "not a positive price"),
        ({"open": 12.0}, "open 12.0 is outside low..high"),
    ],
)
def test_a_broken_bar_is_named_and_the_good_ones_are_handed_back(overrides, message):
    good = ib_bar(date=dt.date(2025, 1, 14))
    with pytest.raises(BrokenBarsError, match=message) as raised:
        bars_from_ib([good, ib_bar(**overrides)])
    assert isinstance(raised.value, InvalidBarError)
    assert raised.value.valid == [bar_from_ib(good)]
    assert len(raised.value.broken) == 1


def test_a_time_sent_twice_keeps_its_last_bar_in_first_seen_order():
    monday, tuesday = dt.date(2025, 1, 13), dt.date(2025, 1, 14)
    first_monday = bar_from_ib(ib_bar(date=monday))
    bars = [first_monday, bar_from_ib(ib_bar(date=tuesday)), bar_from_ib(ib_bar(date=monday, close=10.25))]
    kept = latest_per_timestamp(bars)
    assert [bar.session_date for bar in kept] == [monday, tuesday]
    assert kept[0].close == Decimal("10.25")
    assert latest_per_timestamp(bars[:2]) == bars[:2]


@pytest.mark.parametrize(
    ("code", "text", "expected", "retryable"),
    [
        (
            162,
            "Historical Market Data Service error message:HMDS query returned no data: AAPL@SMART Trades",
            errors.IbkrNoDataError,
            False,
        ),
        (
            162,
            "Historical Market Data Service error message:Historical data request pacing violation",
            errors.IbkrPacingError,
            True,
        ),
        (
            162,
            "Historical Market Data Service error message:API historical data query cancelled: 7",
            errors.IbkrCancelledError,
            True,
        ),
        (
            162,
            "Historical Market Data Service error message:No market data permissions for ASX STK",
            errors.IbkrPermissionError,
            False,
        ),
        (
            200,
            "No security definition has been found for the request",
            errors.IbkrUnknownContractError,
            False,
        ),
        (
            200,
            "The contract description specified for BHP is ambiguous.",
            errors.IbkrAmbiguousContractError,
            False,
        ),
        (354, "Requested market data is not subscribed.", errors.IbkrPermissionError, False),
        (322, "Only 50 simultaneous API historical data requests allowed.", errors.IbkrPacingError, True),
        (321, "Error validating request", errors.IbkrRequestError, False),
        (326, "Unable to connect as the client id is already in use.", errors.IbkrClientIdInUseError, True),
        (504, "Not connected", errors.IbkrConnectionError, True),
        (
            1100,
            "Connectivity between IB and Trader Workstation has been lost.",
            errors.IbkrConnectionError,
            True,
        ),
        (
            165,
            "Historical Market Data Service query message:HMDS server disconnect",
            errors.IbkrConnectionError,
            True,
        ),
        (166, "HMDS Expired Contract Violation", errors.IbkrRequestError, False),
        (100, "Max rate of messages per second has been exceeded", errors.IbkrPacingError, True),
        (
            10168,
            "Requested market data is not subscribed. Delayed market data is not enabled.",
            errors.IbkrPermissionError,
            False,
        ),
        (10197, "No market data during competing live session", errors.IbkrCompetingSessionError, True),
        (
            162,
            "Historical Market Data Service error message:HMDS server connection was broken",
            errors.IbkrServiceError,
            True,
        ),
        (
            1101,
            "Connectivity between IB and TWS has been restored- data lost.",
            errors.IbkrConnectionError,
            True,
        ),
        (2105, "HMDS data farm connection is broken:ushmds", errors.IbkrServiceError, True),
        (2103, "Market data farm connection is broken:usfarm", errors.IbkrServiceError, True),
        (
            420,
            "Invalid real-time query: an unnamed code is a request error",
            errors.IbkrRequestError,
            False,
        ),
    ],
)
def test_error_classification(code, text, expected, retryable):
    error = errors.classify_error(code, text)
    assert type(error) is expected
    assert error.code == code
    assert type(error.code) is int
    assert error.retryable is retryable
    assert str(code) in str(error)


def test_connectivity_restored_and_farm_ok_notices_fail_nothing():
    for code in (1102, 2104, 2106, 2107, 2108, 2158):
        assert errors.is_informational(code)
    for code in (162, 1100, 1101, 2103, 2105, 10197):
        assert not errors.is_informational(code)


def test_named_codes_are_ibs_numbers():
    assert errors.IbErrorCode.CLIENT_ID_IN_USE == 326
    assert errors.IbErrorCode.NO_SECURITY_DEFINITION == 200
    assert errors.IbErrorCode.HISTORICAL_DATA_SERVICE_ERROR == 162
    assert errors.IbErrorCode.REQUEST_PROCESSING_ERROR == 322


def test_an_error_made_with_a_named_code_carries_a_plain_int():
    error = errors.IbkrUnknownContractError(
        "No security definition", errors.IbErrorCode.NO_SECURITY_DEFINITION
    )
    assert type(error.code) is int
    assert str(error).startswith("IB error 200: No security definition")
