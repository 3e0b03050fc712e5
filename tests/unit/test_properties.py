"""Property-based tests of every input a user gives: DAG params, CLI arguments, ``ibkr`` extras.

Each input is accepted, or refused before any request with one clear message naming the field;
hostile text (quotes, SQL, NUL, very long, any unicode) never ends in a traceback. Universe CSV rows:
tests/unit/test_universe.py; hostile names against the database: tests/integration/test_hostile_input.py.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from airflow.models.connection import Connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ibkr_market_data import cli
from ibkr_market_data.errors import BadInputError, IbkrConfigError, InvalidRunParamError
from ibkr_market_data.hooks.ibkr_config import IbkrConnectionConfig
from ibkr_market_data.settings import DAILY_EXCHANGES
from ibkr_market_data.tasks import backfill as backfill_tasks
from ibkr_market_data.tasks import daily as daily_tasks
from ibkr_market_data.tasks.params import selected_exchanges

PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
NOW = dt.datetime(2025, 6, 2, 12, tzinfo=dt.UTC)
DATE_SHAPE = re.compile(r"^\s*\d{4}-\d{2}-\d{2}\s*$")
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "'; DROP TABLE market_data; --",
            "AAPL' OR '1'='1",
            '"quoted"',
            "a\x00b",
            "x" * 10_000,
            "ÄÖÜ 株式 🚀",
            "%s %(name)s {0}",
            "\\N",
            "2025-02-30",
            "2025-13-01",
            "9999-12-31",
        ]
    ),
)
ANY_DATES = st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31))
DATE_PARAM = st.one_of(st.none(), HOSTILE_TEXT, ANY_DATES.map(dt.date.isoformat), ANY_DATES)
BACKFILL_DATE_PARAM = st.one_of(st.none(), HOSTILE_TEXT, ANY_DATES.map(dt.date.isoformat), ANY_DATES)
EXCHANGES_PARAM = st.one_of(
    st.none(),
    HOSTILE_TEXT,
    st.lists(st.one_of(st.sampled_from(DAILY_EXCHANGES), HOSTILE_TEXT), max_size=4),
)


def _names_param(message: str, *names: str) -> bool:
    return any(f"'{name}'" in message for name in names)


@PROPERTY_SETTINGS
@given(date=DATE_PARAM, exchanges=EXCHANGES_PARAM, run_type=st.sampled_from(["manual", "scheduled"]))
def test_daily_date_and_exchanges_are_accepted_or_refused_by_name(date, exchanges, run_type):
    params = {"date": date, "exchanges": exchanges, "dry_run": False, "priority": "all", "symbols": []}
    try:
        trading_date = daily_tasks.resolve_date(params, run_type, NOW - dt.timedelta(days=1), NOW, now=NOW)
    except InvalidRunParamError as exc:
        assert _names_param(str(exc), "date", "exchanges"), exc
        assert "\n" not in str(exc).strip() or len(str(exc)) < 20_000
    else:
        day = dt.date.fromisoformat(trading_date)
        assert day <= NOW.date()
        # A given date is kept as given, never silently replaced.
        if isinstance(date, str) and DATE_SHAPE.match(date):
            assert trading_date == date.strip()


@PROPERTY_SETTINGS
@given(exchanges=EXCHANGES_PARAM)
def test_exchanges_are_known_ones_or_refused_naming_the_param(exchanges):
    try:
        chosen = selected_exchanges({"exchanges": exchanges})
    except InvalidRunParamError as exc:
        assert "Param 'exchanges'" in str(exc)
    else:
        assert chosen and set(chosen) <= set(DAILY_EXCHANGES)


@PROPERTY_SETTINGS
@given(
    start=BACKFILL_DATE_PARAM,
    end=BACKFILL_DATE_PARAM,
    exchanges=EXCHANGES_PARAM,
    symbols=st.one_of(st.none(), HOSTILE_TEXT, st.lists(HOSTILE_TEXT, max_size=4)),
    dry_run=st.one_of(st.booleans(), st.none(), HOSTILE_TEXT),
)
def test_backfill_params_are_accepted_or_refused_by_name(start, end, exchanges, symbols, dry_run):
    params = {
        "start_date": start,
        "end_date": end,
        "exchanges": exchanges,
        "symbols": symbols,
        "dry_run": dry_run,
    }
    try:
        request = backfill_tasks.check_params(params, now=NOW)
    except InvalidRunParamError as exc:
        assert _names_param(str(exc), "start_date", "end_date", "exchanges"), exc
    else:
        assert request.start <= request.end <= NOW.date()
        assert set(request.exchanges) <= set(DAILY_EXCHANGES)
        assert all(symbol == symbol.strip().upper() and symbol for symbol in request.symbols)


@pytest.mark.parametrize("date", ["2005-01-01", "2000-01-01", "0001-01-01"])
def test_a_daily_date_before_the_calendars_is_refused_by_name(date):
    with pytest.raises(InvalidRunParamError, match="'date'"):
        daily_tasks.resolve_date({"date": date}, "manual", NOW, NOW, now=NOW)


@pytest.mark.parametrize("date", ["2005-01-01", "2000-01-01", "0001-01-01"])
def test_cli_collect_refuses_a_date_before_the_calendars(date):
    with pytest.raises(BadInputError, match="--date"):
        cli.check(cli.build_parser().parse_args(["collect", f"--date={date}"]))


def _collect_argv(date: str) -> list[str]:
    return ["collect", f"--date={date}"]


def _backfill_argv(start: str, end: str, exchanges: str, symbols: str) -> list[str]:
    return ["backfill", f"--from={start}", f"--to={end}", f"--exchanges={exchanges}", f"--symbols={symbols}"]


@PROPERTY_SETTINGS
@given(
    argv=st.one_of(
        HOSTILE_TEXT.map(_collect_argv),
        st.builds(_backfill_argv, HOSTILE_TEXT, HOSTILE_TEXT, HOSTILE_TEXT, HOSTILE_TEXT),
        st.lists(HOSTILE_TEXT, max_size=4),
    )
)
def test_cli_arguments_parse_and_check_or_fail_with_one_error(argv, capsys):
    try:
        args = cli.build_parser().parse_args(argv)
    except SystemExit as exc:
        # argparse's own refusal: usage and one "error:" line, exit 2.
        assert exc.code == 2
        stderr = capsys.readouterr().err
        assert [line for line in stderr.splitlines() if "error:" in line], stderr
        return
    try:
        cli.check(args)
    except BadInputError as exc:
        message = str(exc)
        assert message and (
            "--date" in message or _names_param(message, "start_date", "end_date", "exchanges")
        )


def _not_a_plain_date(text: str) -> bool:
    return not DATE_SHAPE.match(text) and text.strip() != ""


@settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(date=HOSTILE_TEXT.filter(_not_a_plain_date))
def test_local_cli_refuses_a_bad_date_with_one_error_line_before_starting(date, capsys, monkeypatch):
    from ibkr_market_data_dev import local_cli, local_env

    started = []
    # Not a mock of the behaviour under test: a tripwire proving nothing is configured or started.
    monkeypatch.setattr(local_env, "configure_airflow", lambda: started.append("airflow"))
    assert local_cli.main(_collect_argv(date)) == 2
    assert started == []
    stderr = capsys.readouterr().err.splitlines()
    assert len(stderr) == 1 and stderr[0].startswith("error: --date"), stderr


# --- the ibkr connection's extras ---------------------------------------------------------------

EXTRA_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    HOSTILE_TEXT,
    st.integers(min_value=-5, max_value=70).map(str),
    st.sampled_from(["true", "false", "yes", "no", "ture", "1", "0", " 32 ", "1e3", "nan", "inf", "-inf"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
EXTRAS = st.dictionaries(
    st.one_of(st.sampled_from(IbkrConnectionConfig.extra_names()), st.text(max_size=12)),
    EXTRA_VALUES,
    max_size=6,
)


def _check_config(config: IbkrConnectionConfig) -> None:
    assert 1 <= config.client_id_range <= 32
    assert config.client_id >= 0
    assert isinstance(config.readonly, bool)
    assert config.connect_timeout > 0 and config.request_timeout > 0
    assert 0 < config.port < 65536


@PROPERTY_SETTINGS
@given(extras=EXTRAS, port=st.one_of(st.none(), st.integers(min_value=1, max_value=65535)))
def test_ibkr_extras_given_as_json_are_accepted_or_refused_by_name(extras, port):
    conn = Connection(
        conn_id="ibkr_default", conn_type="ibkr", host="gateway", port=port, extra=json.dumps(extras)
    )
    try:
        config = IbkrConnectionConfig.from_connection(conn)
    except IbkrConfigError as exc:
        named = [name for name in (*IbkrConnectionConfig.extra_names(), "port") if name in str(exc)]
        assert named, exc
    else:
        _check_config(config)
        if str(extras.get("readonly", "")).strip().lower() in ("ture", "flase"):
            pytest.fail("a misspelt readonly was accepted")


_URI_TEXT = st.text(alphabet=st.characters(whitelist_categories=("L", "N", "P", "S", "Zs")), max_size=12)


@PROPERTY_SETTINGS
@given(extras=st.dictionaries(st.sampled_from(IbkrConnectionConfig.extra_names()), _URI_TEXT, max_size=4))
def test_ibkr_extras_given_in_a_uri_are_accepted_or_refused_by_name(extras):
    from urllib.parse import urlencode

    conn = Connection(conn_id="ibkr_default", uri=f"ibkr://gateway:4002?{urlencode(extras)}")
    try:
        config = IbkrConnectionConfig.from_connection(conn)
    except IbkrConfigError as exc:
        assert any(name in str(exc) for name in extras), exc
    else:
        _check_config(config)


@pytest.mark.parametrize(
    ("query", "extra"),
    [
        ("client_id_range=0", "client_id_range"),
        ("client_id_range=33", "client_id_range"),
        ("readonly=ture", "readonly"),
        ("request_timeout=0", "request_timeout"),
        ("connect_timeout=-1", "connect_timeout"),
        ("market_data_type=9", "market_data_type"),
        ("client_id=%27%3B+DROP+TABLE+x", "client_id"),
    ],
)
def test_known_bad_uri_extras_are_refused_by_name(query, extra):
    with pytest.raises(IbkrConfigError, match=extra):
        IbkrConnectionConfig.from_connection(
            Connection(conn_id="ibkr_default", uri=f"ibkr://gateway:4002?{query}")
        )
