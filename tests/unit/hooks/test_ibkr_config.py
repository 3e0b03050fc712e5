"""The ibkr connection read into IbkrConnectionConfig, and every place that repeats its defaults."""

import dataclasses
import json
import re

import pytest
from airflow.sdk import Connection

from ibkr_market_data.errors import IbkrConfigError
from ibkr_market_data.hooks.ibkr import IbkrHook
from ibkr_market_data.hooks.ibkr_config import MAX_API_CLIENTS, IbkrConnectionConfig, MarketDataType
from ibkr_market_data.provider import CONN_FIELDS, PLACEHOLDERS, get_provider_info
from tests.conftest import REPO

EXTRAS = IbkrConnectionConfig.extra_names()


def config_of(**extras):
    return IbkrConnectionConfig.from_connection(
        Connection(conn_id="ibkr_test", conn_type="ibkr", extra=json.dumps(extras))
    )


def test_every_field_but_host_and_port_is_an_extra():
    assert EXTRAS == (
        "client_id",
        "client_id_range",
        "readonly",
        "account",
        "market_data_type",
        "connect_timeout",
        "request_timeout",
    )


@pytest.mark.parametrize("empty", [None, "", "  "], ids=["null", "empty", "blank"])
def test_null_and_empty_extras_mean_the_default(empty):
    # The UI form stores an emptied field as null; int(None) used to fail the task.
    assert config_of(**dict.fromkeys(EXTRAS, empty)) == IbkrConnectionConfig()


def test_a_connection_without_host_port_or_extras_is_all_defaults():
    config = IbkrConnectionConfig.from_connection(Connection(conn_id="ibkr_test", conn_type="ibkr"))
    assert config == IbkrConnectionConfig()
    assert (config.host, config.port) == ("127.0.0.1", 4002)


def test_uri_extras_arrive_as_strings_and_are_parsed():
    conn = Connection.from_uri(
        "ibkr://gateway.internal:4001?client_id=7&client_id_range=4&readonly=false&account=DU123456"
        "&market_data_type=3&connect_timeout=2.5&request_timeout=30",
        conn_id="ibkr_test",
    )
    assert IbkrConnectionConfig.from_connection(conn) == IbkrConnectionConfig(
        host="gateway.internal",
        port=4001,
        client_id=7,
        client_id_range=4,
        readonly=False,
        account="DU123456",
        market_data_type=MarketDataType.DELAYED,
        connect_timeout=2.5,
        request_timeout=30.0,
    )


def test_json_extras_keep_their_types():
    config = config_of(client_id=0, client_id_range=MAX_API_CLIENTS, readonly=False, request_timeout=1)
    assert (config.client_id, config.client_id_range, config.readonly) == (0, MAX_API_CLIENTS, False)
    assert config.request_timeout == 1.0
    assert type(config.market_data_type) is MarketDataType


@pytest.mark.parametrize("word", [True, 1, "true", "TRUE", " yes ", "On", "1"])
def test_readonly_true_words(word):
    assert config_of(readonly=word).readonly is True


@pytest.mark.parametrize("word", [False, 0, "false", "False", "no", "OFF", "0"])
def test_readonly_false_words(word):
    assert config_of(readonly=word).readonly is False


@pytest.mark.parametrize(
    ("extra", "value"),
    [
        ("client_id", -1),
        ("client_id", "first"),
        ("client_id_range", 0),
        ("client_id_range", 33),
        ("client_id_range", "abc"),
        ("client_id_range", 2.5),
        ("client_id_range", True),
        ("readonly", "ture"),
        ("readonly", "maybe"),
        ("readonly", 2),
        ("account", 12345),
        ("market_data_type", 0),
        ("market_data_type", 5),
        ("market_data_type", "delayed"),
        ("connect_timeout", 0),
        ("connect_timeout", "soon"),
        ("request_timeout", 0),
        ("request_timeout", -1),
        ("request_timeout", "0"),
        ("request_timeout", "inf"),
    ],
)
def test_a_bad_extra_is_refused_by_name(extra, value):
    with pytest.raises(IbkrConfigError, match=rf"^The ibkr connection's extra {extra} must be "):
        config_of(**{extra: value})


@pytest.mark.parametrize(
    ("extras", "message"),
    [
        (
            {"client_id_range": 33},
            "client_id_range must be 1..32 (TWS / IB Gateway accepts 32 API clients), not 33",
        ),
        ({"readonly": "ture"}, "readonly must be true or false (or 1/0, yes/no, on/off), not 'ture'"),
        ({"request_timeout": -1}, "request_timeout must be a number of seconds > 0, not -1.0"),
        (
            {"market_data_type": 5},
            "market_data_type must be one of 1 (live), 2 (frozen), 3 (delayed), 4 (delayed-frozen)",
        ),
    ],
)
def test_a_refusal_says_what_the_extra_takes(extras, message):
    with pytest.raises(IbkrConfigError, match=re.escape(message)):
        config_of(**extras)


def test_a_config_error_is_a_value_error():
    assert issubclass(IbkrConfigError, ValueError)


def test_config_is_frozen():
    config = IbkrConnectionConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.readonly = False  # type: ignore[misc]


def test_unknown_extras_are_named():
    assert IbkrConnectionConfig.unknown_extras({"client_id": 1, "clientid": 2, "timeout": 3}) == [
        "clientid",
        "timeout",
    ]


# -- one set of defaults: connections.json, the provider's form and the hook's docstring ---------


def test_connections_json_extras_equal_the_config_defaults():
    entry = json.loads((REPO / "connections.json").read_text())["ibkr_default"]
    extras = json.loads(entry["extra"])
    assert set(extras) == set(EXTRAS)
    default = IbkrConnectionConfig()
    assert {name: getattr(default, name) for name in EXTRAS} == extras
    assert (entry["host"], entry["port"]) == (default.host, default.port)
    conn = Connection(
        conn_id="ibkr_default", **{key: entry[key] for key in ("conn_type", "host", "port", "extra")}
    )
    assert IbkrConnectionConfig.from_connection(conn) == default


def test_provider_form_has_a_field_for_every_extra():
    assert tuple(CONN_FIELDS) == EXTRAS
    (connection_type,) = get_provider_info()["connection-types"]
    assert connection_type["conn-fields"] is CONN_FIELDS
    assert connection_type["ui-field-behaviour"]["placeholders"] is PLACEHOLDERS


def test_provider_form_shows_the_config_defaults():
    default = IbkrConnectionConfig()
    assert PLACEHOLDERS == {
        "host": "127.0.0.1",
        "port": str(default.port),
        "client_id": str(default.client_id),
        "client_id_range": str(default.client_id_range),
        "readonly": "true",
        "market_data_type": str(int(default.market_data_type)),
        "connect_timeout": f"{default.connect_timeout:g}",
        "request_timeout": f"{default.request_timeout:g}",
    }
    for name, shown in PLACEHOLDERS.items():
        if name in CONN_FIELDS:
            assert f"default {shown}" in CONN_FIELDS[name]["description"], name


def test_provider_form_bounds_agree_with_the_config_checks():
    assert CONN_FIELDS["client_id"]["schema"]["minimum"] == 0
    assert CONN_FIELDS["client_id_range"]["schema"]["maximum"] == MAX_API_CLIENTS
    assert CONN_FIELDS["market_data_type"]["schema"]["enum"] == [
        *(int(kind) for kind in MarketDataType),
        None,
    ]
    for name in EXTRAS:
        assert "null" in CONN_FIELDS[name]["schema"]["type"], f"{name}: an emptied field must be allowed"


def test_hook_docstring_lists_every_extra_with_the_config_default():
    doc = IbkrHook.__doc__ or ""
    listed = dict(re.findall(r"\* ``(\w+)`` \([^)]*?default ([^)]+)\)", doc))
    assert set(listed) == set(EXTRAS)
    expected = {name: PLACEHOLDERS.get(name, "empty") for name in EXTRAS}
    assert listed == expected
    default = IbkrConnectionConfig()
    assert f"``host`` (default ``{default.host}``)" in doc
    assert f"``port`` (default ``{default.port}``" in doc
    assert f"int 1-{MAX_API_CLIENTS}" in doc


def test_readme_extras_table_shows_the_config_defaults():
    readme = (REPO / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+?) \|", readme, flags=re.MULTILINE))
    assert {name: rows.get(name) for name in EXTRAS} == {
        name: PLACEHOLDERS.get(name, "empty") for name in EXTRAS
    }
