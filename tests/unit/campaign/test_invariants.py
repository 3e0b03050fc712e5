"""The campaign's invariants: each holds on a faithful store and catches its breakage (negative control)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from campaign import invariants
from campaign.invariants import (
    DIFFERS,
    MISSING,
    NO_DATA_WRONGLY,
    NOT_SERVED,
    Expected,
    Request,
    Revision,
    RuleBreach,
    Snapshot,
    TaskState,
)

DAY = dt.date(2025, 1, 15)
DAILY_KEY = ("AAPL", "1day", DAY)
MINUTE_KEY = ("AAPL", "1min", DAY)
MIDNIGHT = dt.datetime(2025, 1, 15)
OPEN = dt.datetime(2025, 1, 15, 14, 30)


def values(close: str = "101.5", volume: int = 1000) -> invariants.Values:
    return (Decimal("100"), Decimal("102"), Decimal("99"), Decimal(close), volume, Decimal("100.7"), 12)


def minute(n: int) -> dt.datetime:
    return OPEN + dt.timedelta(minutes=n)


EXPECTED = Expected(
    bars={
        DAILY_KEY: {MIDNIGHT: values()},
        MINUTE_KEY: {minute(0): values(), minute(1): values("101.6")},
        ("GGP", "1day", DAY): {},  # IB has no bar: nothing may be stored, no-data is right
    },
    whole=frozenset({DAILY_KEY, MINUTE_KEY}),
)


def faithful(**changes: object) -> Snapshot:
    bars = {key: dict(found) for key, found in EXPECTED.bars.items() if found}
    snapshot = Snapshot(
        bars=bars,
        stored_at={DAILY_KEY: 100.0, MINUTE_KEY: 100.0},
        no_data=frozenset({("GGP", "1day", DAY)}),
    )
    return Snapshot(**{**snapshot.__dict__, **changes})


# -- lost ---------------------------------------------------------------------------------------


def test_a_faithful_store_loses_nothing() -> None:
    assert invariants.lost(EXPECTED, faithful()) == []


def test_a_missing_intraday_bar_is_lost() -> None:
    snapshot = faithful()
    del snapshot.bars[MINUTE_KEY][minute(1)]  # type: ignore[attr-defined]
    assert [(d.key, d.kind, d.timestamp) for d in invariants.lost(EXPECTED, snapshot)] == [
        (MINUTE_KEY, MISSING, minute(1))
    ]


def test_a_bar_with_other_values_an_unserved_bar_and_a_wrong_no_data_are_each_differences() -> None:
    snapshot = faithful(
        bars={
            DAILY_KEY: {MIDNIGHT: values(close="101.51")},
            MINUTE_KEY: {minute(0): values(), minute(1): values("101.6"), minute(2): values()},
        },
        no_data=frozenset({DAILY_KEY}),
    )
    kinds = sorted((d.key[1], d.kind) for d in invariants.lost(EXPECTED, snapshot))
    assert kinds == [("1day", DIFFERS), ("1day", NO_DATA_WRONGLY), ("1min", NOT_SERVED)]


def test_numbers_compare_as_numbers_to_eight_places() -> None:
    padded = (
        Decimal("100.00000000"),
        Decimal("102.0"),
        Decimal("99"),
        Decimal("101.50"),
        1000,
        Decimal("100.7"),
        12,
    )
    assert invariants.same_values(padded, values())
    assert not invariants.same_values(padded, values(volume=1001))
    assert not invariants.same_values(values()[:5] + (None, 12), values())


# -- silent -------------------------------------------------------------------------------------


def test_a_green_run_with_a_bar_missing_is_silent_whatever_a_later_run_does() -> None:
    snapshot = faithful()
    del snapshot.bars[DAILY_KEY][MIDNIGHT]  # type: ignore[attr-defined]
    differences = invariants.lost(EXPECTED, snapshot)
    assert invariants.silent(["success"], differences) == 1
    assert invariants.silent(["failed"], differences) == 0  # a red run said so
    assert invariants.silent(["success"], invariants.lost(EXPECTED, faithful())) == 0


# -- duplicated work ----------------------------------------------------------------------------


def request(at: float, key: invariants.Key = DAILY_KEY, outcome: str = "bars:1") -> Request:
    return Request(at, key[0], key[1], (key[2],), outcome)


def test_a_request_for_a_session_stored_whole_is_needless_unless_the_scenario_explains_it() -> None:
    first, retry, again = request(50.0), request(90.0), request(150.0)
    assert invariants.needless_requests([first, retry], EXPECTED, faithful()) == []
    assert invariants.needless_requests([first, retry, again], EXPECTED, faithful()) == [again]
    assert invariants.needless_requests([first, again], EXPECTED, faithful(), allowance=1) == []
    assert invariants.needless_requests(
        [first, again, request(160.0)], EXPECTED, faithful(), allowance=1
    ) == [request(160.0)]


def test_a_request_is_needed_while_one_session_it_covers_is_not_stored_whole() -> None:
    window = Request(150.0, "AAPL", "1day", (DAY - dt.timedelta(days=1), DAY))
    assert invariants.needless_requests([window], EXPECTED, faithful()) == []
    short = faithful(bars={DAILY_KEY: {MIDNIGHT: values()}, MINUTE_KEY: {minute(0): values()}})
    assert invariants.needless_requests([request(150.0, MINUTE_KEY)], EXPECTED, short) == []


def test_a_session_ib_serves_short_or_empty_may_be_asked_again_to_confirm_it() -> None:
    not_whole = Expected(EXPECTED.bars, whole=frozenset({DAILY_KEY}))
    assert invariants.needless_requests([request(150.0, MINUTE_KEY)], not_whole, faithful()) == []
    assert invariants.needless_requests([request(150.0, ("GGP", "1day", DAY))], EXPECTED, faithful()) == []


def test_repeats_count_every_request_beyond_the_first_per_key() -> None:
    assert invariants.repeats([request(1.0), request(2.0), request(3.0, MINUTE_KEY)]) == 1


# -- revisions ----------------------------------------------------------------------------------


def test_only_a_change_ib_served_both_sides_of_is_a_real_revision() -> None:
    preliminary, final = values(volume=950), values()
    versions = {(DAILY_KEY, MIDNIGHT): {preliminary, final}}
    real = Revision(DAILY_KEY, MIDNIGHT, preliminary, final)
    no_change = Revision(DAILY_KEY, MIDNIGHT, final, final)
    never_served = Revision(DAILY_KEY, MIDNIGHT, values(volume=7), final)
    assert invariants.fake_revisions([real], versions) == []
    assert invariants.fake_revisions([no_change, never_served], versions) == [no_change, never_served]
    # A data-defect fault made IB serve spoiled values: their revision is real.
    assert invariants.fake_revisions([never_served], versions, defective_symbols={"AAPL"}) == []


# -- unfinished ---------------------------------------------------------------------------------


def test_tasks_left_hanging_or_failed_in_the_last_run_and_pending_attempts_are_unfinished() -> None:
    done = [
        TaskState("run1", "collect", 0, "failed", "AAPL"),  # the first run failed; the rerun mended it
        TaskState("run2", "collect", 0, "success", "AAPL"),
        TaskState("run2", "summary", -1, "success"),
    ]
    assert invariants.unfinished(done, "run2", {"run1": 0, "run2": 0}) == []
    hanging = [*done, TaskState("run2", "collect", 1, "up_for_retry", "BHP")]
    assert invariants.unfinished(hanging, "run2", {}) == ["collect[BHP] of run2 left up_for_retry"]
    failed_last = [*done, TaskState("run2", "plan", -1, "failed")]
    assert invariants.unfinished(failed_last, "run2", {}) == ["plan of the last run failed"]
    assert invariants.unfinished(done, "run2", {"run2": 2}) == ["2 attempts of run2 still pending"]


# -- IB rules -----------------------------------------------------------------------------------


def test_a_refused_client_id_is_by_design_only_when_an_outside_client_held_it() -> None:
    held = RuleBreach("duplicate_client_id", 3)
    elsewhere = RuleBreach("duplicate_client_id", 12)
    pacing = RuleBreach("pacing_identical_request", 3)
    broken, by_design = invariants.rules_broken(
        [held, elsewhere, pacing], ("duplicate_client_id",), {1, 2, 3}
    )
    assert by_design == [held]
    assert broken == [elsewhere, pacing]
    assert invariants.rules_broken([held], (), {3}) == ([held], [])
