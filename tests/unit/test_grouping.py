"""Symbols per mapped task: the grouping that keeps a run under Airflow's max_map_length."""

import json

import pytest

from ibkr_market_data.errors import GroupingConfigError
from ibkr_market_data.grouping import (
    AIRFLOW_MAX_MAP_LENGTH,
    DEFAULT_MAX_MAPPED_TASKS,
    group_items,
    group_label,
    in_flight_per_connection,
    max_mapped_tasks,
)
from ibkr_market_data.settings import IBKR_POOL, IBKR_POOL_SLOTS
from ibkr_market_data_dev.local_env import REPO_ROOT


def names(count):
    return [f"S{index:04d}" for index in range(count)]


def grouped(count, max_instances):
    return group_items(names(count), max_instances, str)


def test_up_to_the_limit_each_symbol_is_its_own_instance_named_by_the_symbol():
    for count in (0, 1, 5):
        assert grouped(count, 5) == [(name, [name]) for name in names(count)]


def test_one_past_the_limit_makes_groups_named_by_their_first_and_last_symbol():
    groups = grouped(6, 5)
    assert [label for label, _ in groups] == ["S0000…S0001 (2)", "S0002", "S0003", "S0004", "S0005"]
    assert [symbol for _, chunk in groups for symbol in chunk] == names(6), "every symbol once, in order"


def test_five_thousand_symbols_fill_the_default_instances_in_near_equal_contiguous_groups():
    groups = grouped(5_000, DEFAULT_MAX_MAPPED_TASKS)
    sizes = [len(chunk) for _, chunk in groups]
    assert len(groups) == DEFAULT_MAX_MAPPED_TASKS
    assert set(sizes) == {19, 20} and sum(sizes) == 5_000
    assert [symbol for _, chunk in groups for symbol in chunk] == names(5_000)
    assert groups[0][0] == "S0000…S0019 (20)"
    assert len({label for label, _ in groups}) == len(groups), "map indexes are unique"


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        grouped(3, 0)


def test_the_limit_comes_from_the_environment_and_never_passes_airflows_max_map_length():
    assert max_mapped_tasks({}) == DEFAULT_MAX_MAPPED_TASKS
    assert max_mapped_tasks({"IBKR_MAX_MAPPED_TASKS": "40"}) == 40
    assert max_mapped_tasks({"IBKR_MAX_MAPPED_TASKS": str(AIRFLOW_MAX_MAP_LENGTH)}) == AIRFLOW_MAX_MAP_LENGTH
    for bad in ("0", "1025", "-3", "many", "2.5"):
        with pytest.raises(GroupingConfigError, match=rf"IBKR_MAX_MAPPED_TASKS is '{bad}'"):
            max_mapped_tasks({"IBKR_MAX_MAPPED_TASKS": bad})


def test_requests_in_flight_across_the_pool_stay_under_ibs_fifty():
    for slots in (1, 2, 8, 16, 24, 32, 48, 60):
        per_connection = in_flight_per_connection(slots)
        assert per_connection >= 1
        assert slots * per_connection <= 48 or per_connection == 1
    assert in_flight_per_connection(16) == 3
    with pytest.raises(ValueError):
        in_flight_per_connection(0)


def test_the_pool_slots_the_in_flight_limit_is_derived_from_are_the_pool_file_s():
    pools = json.loads((REPO_ROOT / "pools.json").read_text())
    assert pools[IBKR_POOL]["slots"] == IBKR_POOL_SLOTS


def test_a_group_of_one_is_named_by_its_symbol():
    assert group_label(["AAPL"]) == "AAPL"
    assert group_label(["AAPL", "AMZN"]) == "AAPL…AMZN (2)"
