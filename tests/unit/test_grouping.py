"""Symbols per mapped task: the grouping that keeps a run under Airflow's max_map_length."""

import json

import pytest

from ibkr_market_data.errors import GroupingConfigError
from ibkr_market_data.grouping import (
    AIRFLOW_MAX_MAP_LENGTH,
    INSTANCE_SECONDS,
    REQUEST_SECONDS,
    group_count,
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


def test_five_thousand_symbols_of_equal_work_make_near_equal_contiguous_groups():
    groups = grouped(5_000, 256)
    sizes = [len(chunk) for _, chunk in groups]
    assert len(groups) == 256
    assert set(sizes) == {19, 20} and sum(sizes) == 5_000
    assert [symbol for _, chunk in groups for symbol in chunk] == names(5_000)
    assert groups[0][0] == "S0000…S0019 (20)"
    assert len({label for label, _ in groups}) == len(groups), "map indexes are unique"


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        grouped(3, 0)


def test_the_override_comes_from_the_environment_and_never_passes_airflows_max_map_length():
    assert max_mapped_tasks({}) is None, "unset: the run sizes its groups itself"
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


def daily_work(items):
    return items * REQUEST_SECONDS


def test_up_to_the_pool_s_slots_each_item_is_its_own_instance():
    for items in (1, 15, 16):
        assert group_count(items, daily_work(items), pool_slots=16, in_flight=3, environ={}) == items
    assert group_items([], group_count(0, 0.0, 16, 3, {}), str) == [], "a run with nothing to collect"


def test_beyond_the_pool_s_slots_the_groups_follow_the_square_root_of_the_work():
    # ceil(sqrt(items x 0.2 / (3 x 0.3))), never fewer than the 16 slots.
    expected = {17: 16, 320: 16, 1_100: 16, 1_200: 17, 5_000: 34, 10_000: 48, 100_000: 150}
    for items, groups in expected.items():
        assert group_count(items, daily_work(items), pool_slots=16, in_flight=3, environ={}) == groups, items
    assert INSTANCE_SECONDS == 0.3


def test_the_groups_never_pass_airflows_max_map_length_nor_the_items():
    assert group_count(10**9, daily_work(10**9), 16, 3, {}) == AIRFLOW_MAX_MAP_LENGTH
    assert group_count(20, 10**6, 16, 3, {}) == 20, "no more groups than items"


def test_heavier_work_makes_more_groups():
    light = group_count(5_000, daily_work(5_000), 16, 3, {})
    heavy = group_count(5_000, 4 * daily_work(5_000), 16, 3, {})
    assert (light, heavy) == (34, 67), "four times the work: about twice the groups"


def test_an_operator_s_max_mapped_tasks_sets_the_count():
    environ = {"IBKR_MAX_MAPPED_TASKS": "128"}
    assert group_count(5_000, daily_work(5_000), 16, 3, environ) == 128
    assert group_count(40, daily_work(40), 16, 3, environ) == 40
    assert group_count(40, daily_work(40), 16, 3, {"IBKR_MAX_MAPPED_TASKS": "3"}) == 3
    with pytest.raises(GroupingConfigError, match="IBKR_MAX_MAPPED_TASKS is 'x'"):
        group_count(40, daily_work(40), 16, 3, {"IBKR_MAX_MAPPED_TASKS": "x"})


def test_groups_are_cut_by_work_not_by_count():
    # 300 daily items (weight 1) then 100 intraday items (weight 5), in the plan's order.
    items = [("D", index) for index in range(300)] + [("I", index) for index in range(100)]
    weight = {"D": 1.0, "I": 5.0}
    groups = group_items(items, 16, lambda item: f"{item[0]}{item[1]:03d}", lambda item: weight[item[0]])
    work = [sum(weight[kind] for kind, _ in chunk) for _, chunk in groups]
    assert len(groups) == 16
    assert [item for _, chunk in groups for item in chunk] == items, "every item once, in order"
    # A cut by count puts 25 items in each group: 25 of work first, 125 last.
    assert max(work) - min(work) <= max(weight.values()), work


def test_one_heavy_item_leaves_the_rest_to_share_the_other_groups():
    groups = group_items(list(range(7)), 3, str, lambda item: 10.0 if item == 0 else 1.0)
    assert [chunk for _, chunk in groups] == [[0], [1, 2, 3], [4, 5, 6]]


def test_a_target_s_work_counts_the_bars_it_should_return():
    from ibkr_market_data.daily_plan import CollectionTarget
    from ibkr_market_data.tasks.daily import target_seconds

    common = dict(symbol_id=1, symbol="AAPL", exchange="SMART", primary_exchange="NASDAQ", currency="USD")
    common |= dict(sec_type="STK", con_id=265598, session="2025-01-15", end_date_time="", duration="5 D")
    sessions = ("2025-01-09", "2025-01-10", "2025-01-13", "2025-01-14", "2025-01-15")
    daily = CollectionTarget(**common, sessions=sessions)
    minutes = CollectionTarget(**common, bar_size="1 min", sessions=sessions, expected_bars=(390,) * 5)
    assert (daily.planned_bars, minutes.planned_bars) == (5, 1_950)
    assert target_seconds(minutes) / target_seconds(daily) > 1.2
