"""Proof that each injected fault fired: the simulator's counters and request log, or what an action saw.

A scenario counts as survived only once every fault it injected shows its effect; the rules per
fault: docs/fault-campaign.md#every-fault-proves-it-fired.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from tws_simulator.faults import NUMBERS, PROPERTIES, SWITCHES

CONNECT_NOTICE_CODES = (2104, 2106, 2158)
FARM_NOTICE_CODES = (2103, 2105, 2157, 2104, 2106, 2158, 2107)
#: Faults that shape an answer sent with bars: the answers so sent are their outcome.
BAR_SHAPING = (
    "corrupt_bars",
    "corrupt_first_bar",
    "spike",
    "stale_price",
    "volume_units",
    "intraday_mismatch",
    "bars_out_of_order",
    "duplicate_bar",
    "split_answer",
    "naive_bar_times",
)
#: Faults that spoil the values of the bars they answer with: a revision of those bars is real.
DATA_DEFECTS = ("spike", "stale_price", "volume_units", "intraday_mismatch")


@dataclass(frozen=True)
class Proof:
    """Whether one injected fault fired, and the evidence either way."""

    fault: str
    fired: bool
    evidence: str

    def __str__(self) -> str:
        return f"{self.fault}: {self.evidence}" + ("" if self.fired else " (**did not fire**)")


@dataclass(frozen=True)
class Answer:
    """How one request the simulator logged ended: ``outcome`` as in the request log."""

    outcome: str
    error_code: int | None = None
    error_message: str = ""
    #: Seconds from the request's arrival to its answer (None: never answered).
    waited: float | None = None


@dataclass(frozen=True)
class SimulatorTrace:
    """What the simulator shows of one scenario: faults left over, switches fired, answers, notices."""

    residual: Mapping[str, Mapping[str, object]]
    fired: Mapping[str, int]
    answers: Sequence[Answer]
    notices: Mapping[int, int]
    #: Covered keys whose served bars a market property changed (from the model comparison).
    keys_changed_by_properties: int = 0


def _errors(trace: SimulatorTrace, code: int, text: str = "") -> int:
    return sum(1 for a in trace.answers if a.error_code == code and text.lower() in a.error_message.lower())


def _outcomes(trace: SimulatorTrace, *outcomes: str) -> int:
    return sum(1 for a in trace.answers if a.outcome in outcomes)


def _bars(trace: SimulatorTrace) -> int:
    return sum(1 for a in trace.answers if a.outcome.startswith("bars:"))


def _notices(trace: SimulatorTrace, codes: Sequence[int], times: int = 1) -> tuple[bool, str]:
    sent = {code: trace.notices.get(code, 0) for code in codes}
    text = ", ".join(f"{code}×{count}" for code, count in sent.items())
    return all(count >= times for count in sent.values()), f"notices sent {text}"


#: fault -> (trace, times fired) -> (its outcome is there, evidence text)
OutcomeCheck = Callable[[SimulatorTrace, int], tuple[bool, str]]


def _at_least(count: Callable[[SimulatorTrace], int], what: str) -> OutcomeCheck:
    def check(trace: SimulatorTrace, fired: int) -> tuple[bool, str]:
        found = count(trace)
        return found >= fired, f"{found} {what}"

    return check


def _notices_check(codes: Sequence[int], per_firing: bool = False) -> OutcomeCheck:
    def check(trace: SimulatorTrace, fired: int) -> tuple[bool, str]:
        return _notices(trace, codes, fired if per_firing else 1)

    return check


def _both(first: OutcomeCheck, second: OutcomeCheck) -> OutcomeCheck:
    def check(trace: SimulatorTrace, fired: int) -> tuple[bool, str]:
        (ok1, text1), (ok2, text2) = first(trace, fired), second(trace, fired)
        return ok1 and ok2, f"{text1}; {text2}"

    return check


def _lost_answers(trace: SimulatorTrace, fired: int) -> tuple[bool, str]:
    found = _outcomes(trace, "lost")
    return found >= 1, f"{found} requests lost in the outage"


OUTCOMES: dict[str, OutcomeCheck] = {
    "drop_connection": _at_least(lambda t: _outcomes(t, "dropped"), "requests dropped with their socket"),
    "never_answer": _at_least(
        lambda t: _outcomes(t, "cancelled", "abandoned"), "unanswered requests cancelled or abandoned"
    ),
    "pacing_violation": _at_least(lambda t: _errors(t, 162, "pacing"), "answered 162 pacing violation"),
    "open_requests_refused": _at_least(lambda t: _errors(t, 322), "answered 322"),
    "no_data": _at_least(lambda t: _errors(t, 162, "returned no data"), "answered 162 no data"),
    "no_permission": _at_least(lambda t: _errors(t, 354), "answered 354"),
    "unknown_contract": _at_least(lambda t: _errors(t, 200), "answered 200"),
    "ambiguous": _at_least(lambda t: _errors(t, 200), "answered 200"),
    "connectivity_lost": _notices_check((1100, 1102)),
    "connectivity_lost_data_lost": _both(_notices_check((1100, 1101)), _lost_answers),
    "farm_notices": _notices_check(FARM_NOTICE_CODES, per_firing=True),
    "connect_notices": _notices_check(CONNECT_NOTICE_CODES, per_firing=True),
    "hmds_farm_stall": _notices_check((2105, 2106)),
    "hmds_farm_fail": _both(
        _notices_check((2105, 2106)),
        lambda t, fired: (
            _errors(t, 162, "farm connection is broken") >= 1,
            f"{_errors(t, 162, 'farm connection is broken')} answered 162 farm broken",
        ),
    ),
    **{name: _at_least(_bars, "answers sent with bars") for name in BAR_SHAPING},
}


def simulator_proofs(trace: SimulatorTrace) -> list[Proof]:
    """Return a proof per fault the simulator was given: consumed, fired, and its outcome logged.

    A count must be spent (residual 0) and a switch left on must have fired; each must show its
    outcome (the answers, the notices). A market property must change at least one covered bar.
    """
    residual: dict[str, list[object]] = {}
    for settings in trace.residual.values():
        for name, value in settings.items():
            residual.setdefault(name, []).append(value)
    proofs = []
    for name in sorted(set(residual) | {n for n, count in trace.fired.items() if count}):
        if name == "latency_per_open_request_ms":
            proofs.append(_queue_proof(trace, residual))
            continue
        if name in NUMBERS:
            continue
        if name in PROPERTIES:
            changed = trace.keys_changed_by_properties
            proofs.append(Proof(name, changed > 0, f"changes {changed} covered sessions of what IB serves"))
            continue
        fired = trace.fired.get(name, 0)
        left = sum(v for v in residual.get(name, []) if not isinstance(v, bool) and isinstance(v, int))
        parts = [f"fired {fired}×"]
        ok = fired > 0
        if left:
            parts.append(f"{left} left unused")
            ok = False
        if name in SWITCHES and name in OUTCOMES:
            shown, text = OUTCOMES[name](trace, fired)
            parts.append(text)
            ok = ok and shown
        proofs.append(Proof(name, ok, ", ".join(parts)))
    return proofs


def _queue_proof(trace: SimulatorTrace, residual: Mapping[str, list[object]]) -> Proof:
    """Prove IB's HMDS queue slowed an answer: one waited as if two requests or more were open."""
    step = max(
        (float(v) for v in residual.get("latency_per_open_request_ms", []) if isinstance(v, int | float)),
        default=0,
    )
    fixed = max((float(v) for v in residual.get("latency_ms", []) if isinstance(v, int | float)), default=0)
    slowest = max((a.waited for a in trace.answers if a.waited is not None), default=0.0)
    fired = step > 0 and slowest * 1000 >= fixed + 2 * step
    return Proof(
        "latency_per_open_request_ms",
        fired,
        f"slowest answer {slowest:.2f} s (fixed {fixed / 1000:g} s, {step:g} ms per open request)",
    )


def count_notices(codes: Iterable[int]) -> dict[int, int]:
    """Return how many notices of each code were sent."""
    return dict(Counter(codes))


def fired_verdict(proofs: Sequence[Proof], injected: Sequence[str]) -> tuple[bool, str]:
    """Return whether every fault a scenario injected fired, and the evidence as one text.

    ``injected``: what the scenario's actions said they did. Something injected without a proof
    did not show that it fired; nothing injected needs none.
    """
    if not proofs:
        if any(injected):
            return False, "**no evidence that it fired**"
        return True, "nothing injected"
    return all(proof.fired for proof in proofs), "; ".join(str(proof) for proof in proofs)
