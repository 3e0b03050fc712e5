"""Check the daily bars a run stored: spikes, stale prices, volume units, missing sessions, intraday.

The checks are pure: one symbol's stored bars, the sessions the run expected and the rules in, one
:class:`Finding` per defect out, each with a configurable severity. See docs/data-quality.md.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import os
import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from ibkr_market_data.errors import InvalidQualitySettingError


class Check(enum.StrEnum):
    """A data-quality check, by the name findings and settings use."""

    SPIKE = "spike"
    STALE_PRICE = "stale_price"
    VOLUME_UNITS = "volume_units"
    MISSING_SESSION = "missing_session"
    INTRADAY_VS_DAILY = "intraday_vs_daily"
    SHORT_SESSION = "short_session"
    DERIVED_VS_IB = "derived_vs_ib"


class Severity(enum.StrEnum):
    """What a finding does: fail the run (error), log and record it (warning), or nothing (ignore)."""

    IGNORE = "ignore"
    WARNING = "warning"
    ERROR = "error"


DEFAULT_SEVERITIES: Mapping[Check, Severity] = {
    Check.SPIKE: Severity.ERROR,
    Check.STALE_PRICE: Severity.WARNING,
    Check.VOLUME_UNITS: Severity.WARNING,
    Check.MISSING_SESSION: Severity.WARNING,
    Check.INTRADAY_VS_DAILY: Severity.WARNING,
    Check.SHORT_SESSION: Severity.WARNING,
    Check.DERIVED_VS_IB: Severity.WARNING,
}


#: Environment variable overriding the severities: ``spike=warning,stale_price=ignore``.
SEVERITIES_VARIABLE = "IBKR_QUALITY_SEVERITIES"


def parse_severities(text: str | None) -> dict[Check, Severity]:
    """Return the default severities overridden by ``text`` (``spike=warning,stale_price=ignore``).

    :raises InvalidQualitySettingError: an entry is not ``check=severity`` with known names.
    """
    severities = dict(DEFAULT_SEVERITIES)
    for entry in (text or "").split(","):
        if not entry.strip():
            continue
        name, sep, value = entry.partition("=")
        if not sep:
            raise InvalidQualitySettingError(f"{SEVERITIES_VARIABLE} entry {entry.strip()!r} has no '='")
        try:
            check = Check(name.strip())
            severity = Severity(value.strip())
        except ValueError:
            raise InvalidQualitySettingError(
                f"{SEVERITIES_VARIABLE} entry {entry.strip()!r} must be check=severity, checks: "
                f"{', '.join(Check)}; severities: {', '.join(Severity)}"
            ) from None
        severities[check] = severity
    return severities


@dataclass(frozen=True)
class QualityRules:
    """The checks' thresholds and severities."""

    reference_sessions: int = 20
    #: Fewer reference bars than this and the spike and volume checks say nothing.
    min_reference: int = 5
    spike_sigmas: float = 10.0
    spike_min_move: float = 0.3  # a 30 % move in one session at least
    stale_sessions: int = 3
    #: Volume over the reference median within these bounds (or the inverse) is a units step.
    volume_step: tuple[float, float] = (50.0, 200.0)
    #: The day's 1-minute high and low within this share of the daily bar's.
    intraday_price_tolerance: float = 0.01
    #: The day's 1-minute volume over the daily volume within these bounds.
    intraday_volume_ratio: tuple[float, float] = (0.5, 1.05)
    severities: Mapping[Check, Severity] = field(default_factory=lambda: dict(DEFAULT_SEVERITIES))


def rules_from_env(environ: Mapping[str, str] = os.environ) -> QualityRules:
    """Return the default rules with the severities of ``IBKR_QUALITY_SEVERITIES``.

    :raises InvalidQualitySettingError: the variable holds a bad entry.
    """
    return QualityRules(severities=parse_severities(environ.get(SEVERITIES_VARIABLE)))


@dataclass(frozen=True)
class StoredBar:
    """The fields of one stored daily bar that the checks read."""

    session: dt.date
    close: Decimal
    volume: int
    high: Decimal | None = None
    low: Decimal | None = None


@dataclass(frozen=True)
class IntradaySession:
    """A session's 1-minute bars summed up: highest high, lowest low, total volume and their count."""

    high: Decimal
    low: Decimal
    volume: int
    bars: int
    #: Bars the session holds by the exchange's schedule: fewer stored and it is not compared,
    #: unless IB settled the session with that many (a halt, minutes without a trade).
    scheduled: int
    settled: bool = False


@dataclass(frozen=True)
class Finding:
    """One defect a check found in one symbol's session."""

    symbol_id: int
    symbol: str
    session: dt.date
    check: Check
    severity: Severity
    detail: str

    def describe(self) -> str:
        """Return the finding as one log line."""
        return f"{self.symbol} {self.session.isoformat()} {self.check}: {self.detail}"


@dataclass(frozen=True)
class SymbolData:
    """One symbol's inputs: its bars from the reference sessions on, and the run's expected sessions."""

    symbol_id: int
    symbol: str
    bars: Sequence[StoredBar]  # oldest first
    expected: Collection[dt.date]  # sessions the run set out to have (its window)
    no_data: Collection[dt.date] = ()
    #: new close / old close of the symbol's revised bars (IB adjusting history), by session.
    revision_ratios: Mapping[dt.date, float] = field(default_factory=dict)
    #: The run's sessions of 1-minute bars, summed up, to hold against the daily bar.
    intraday: Mapping[dt.date, IntradaySession] = field(default_factory=dict)
    #: Recorded splits (``corporate_actions``): new price / old price, by effective session.
    split_factors: Mapping[dt.date, float] = field(default_factory=dict)


def check_symbol(data: SymbolData, rules: QualityRules = QualityRules()) -> list[Finding]:
    """Return every finding for ``data``'s expected sessions, oldest first, ignored checks left out."""
    checked = set(data.expected)
    findings: list[Finding] = []
    for position, bar in enumerate(data.bars):
        if bar.session not in checked:
            continue
        reference = data.bars[max(0, position - rules.reference_sessions) : position]
        for check, detail in _bar_findings(bar, reference, data.bars[: position + 1], data, rules):
            findings.append(_finding(data, bar.session, check, detail, rules))
    for bar in data.bars:
        if bar.session not in checked:
            continue
        minutes = data.intraday.get(bar.session)
        if minutes is None:
            continue
        disagreement = intraday_disagreement(bar, minutes, rules)
        if disagreement:
            findings.append(_finding(data, bar.session, Check.INTRADAY_VS_DAILY, disagreement, rules))
        short = short_session(minutes)
        if short:
            findings.append(_finding(data, bar.session, Check.SHORT_SESSION, short, rules))
    stored = {bar.session for bar in data.bars}
    for session in sorted(checked - stored - set(data.no_data)):
        findings.append(
            _finding(data, session, Check.MISSING_SESSION, "no bar stored and no 'no data' answer", rules)
        )
    return [finding for finding in findings if finding.severity is not Severity.IGNORE]


def check_all_symbols(symbols: Iterable[SymbolData], rules: QualityRules = QualityRules()) -> list[Finding]:
    """Return the findings of every symbol, one symbol after the other."""
    return [finding for data in symbols for finding in check_symbol(data, rules)]


def _finding(data: SymbolData, session: dt.date, check: Check, detail: str, rules: QualityRules) -> Finding:
    severity = rules.severities.get(check, DEFAULT_SEVERITIES[check])
    return Finding(data.symbol_id, data.symbol, session, check, severity, detail)


def _bar_findings(
    bar: StoredBar,
    reference: Sequence[StoredBar],
    up_to_bar: Sequence[StoredBar],
    data: SymbolData,
    rules: QualityRules,
) -> Iterable[tuple[Check, str]]:
    spike = _spike(bar, reference, data.revision_ratios, rules, data.split_factors)
    if spike:
        yield Check.SPIKE, spike
    stale = _stale(up_to_bar, rules)
    if stale:
        yield Check.STALE_PRICE, stale
    if not spike:
        units = _volume_units(bar, reference, rules)
        if units:
            yield Check.VOLUME_UNITS, units


def _spike(
    bar: StoredBar,
    reference: Sequence[StoredBar],
    revision_ratios: Mapping[dt.date, float],
    rules: QualityRules,
    split_factors: Mapping[dt.date, float] | None = None,
) -> str | None:
    if len(reference) < rules.min_reference or bar.close <= 0:
        return None
    closes = [float(ref.close) for ref in reference if ref.close > 0]
    low, high = min(closes), max(closes)
    if low <= float(bar.close) <= high:
        return None
    move = math.log(float(bar.close) / closes[-1])
    returns = [math.log(b / a) for a, b in zip(closes, closes[1:], strict=False)]
    threshold = max(rules.spike_sigmas * _robust_sigma(returns), math.log1p(rules.spike_min_move))
    if abs(move) <= threshold:
        return None
    ratio = math.exp(move)
    if any(
        reference[0].session <= session <= bar.session and abs(math.log(revised / ratio)) < 0.05
        for session, revised in revision_ratios.items()
    ):
        return None  # IB revised this stretch of history by the same ratio: a corporate action
    if any(
        reference[0].session < session <= bar.session and abs(math.log(factor / ratio)) < 0.05
        for session, factor in (split_factors or {}).items()
    ):
        return None  # a recorded split explains the step (history not, or not yet, on the new basis)
    return (
        f"close {bar.close} is {ratio:.2f}x the previous close {closes[-1]:.6g} and outside the "
        f"{low:.6g}..{high:.6g} range of the previous {len(reference)} sessions "
        f"(threshold {math.exp(threshold):.2f}x)"
    )


def intraday_disagreement(daily: StoredBar, minutes: IntradaySession, rules: QualityRules) -> str | None:
    """Return how a session's 1-minute bars disagree with its daily bar beyond IB's known differences.

    None when they agree, or when the session's 1-minute bars are not all stored (nor settled short).
    """
    if (minutes.bars < minutes.scheduled and not minutes.settled) or daily.high is None or daily.low is None:
        return None
    problems = []
    for name, intraday, day in (("high", minutes.high, daily.high), ("low", minutes.low, daily.low)):
        if day > 0 and abs(float(intraday / day) - 1) > rules.intraday_price_tolerance:
            problems.append(f"1-minute {name} {intraday} vs daily {day}")
    low, high = rules.intraday_volume_ratio
    if daily.volume > 0 and not low <= minutes.volume / daily.volume <= high:
        problems.append(
            f"1-minute volume {minutes.volume} is {minutes.volume / daily.volume:.2f}x "
            f"the daily {daily.volume}"
        )
    if not problems:
        return None
    return "; ".join(problems) + f" (over {minutes.bars} bars)"


def short_session(minutes: IntradaySession) -> str | None:
    """Return how a session's 1-minute bars fall short of its schedule and whether IB settled it, or None."""
    if minutes.bars >= minutes.scheduled:
        return None
    missing = minutes.scheduled - minutes.bars
    state = (
        "settled complete: IB answered the same bars twice and they add up to the daily bar"
        if minutes.settled
        else "not settled: asked again until IB's answers agree with the daily bar"
    )
    return (
        f"{minutes.bars} of {minutes.scheduled} scheduled 1-minute bars, {missing} minutes without a bar "
        f"(a halt or minutes without a trade); {state}"
    )


def _robust_sigma(values: Sequence[float]) -> float:
    """Return the standard deviation estimated from the median absolute deviation (robust to outliers)."""
    if len(values) < 2:
        return 0.0
    center = statistics.median(values)
    return 1.4826 * statistics.median(abs(value - center) for value in values)


def _stale(up_to_bar: Sequence[StoredBar], rules: QualityRules) -> str | None:
    """Return a finding on the bar completing ``stale_sessions`` unchanged, volume-less sessions in a row."""
    run = 0
    for previous, bar in zip(up_to_bar, up_to_bar[1:], strict=False):
        run = run + 1 if bar.close == previous.close and bar.volume == 0 else 0
    if run == rules.stale_sessions:
        return f"close {up_to_bar[-1].close} unchanged with no volume for {run} sessions"
    return None


def _volume_units(bar: StoredBar, reference: Sequence[StoredBar], rules: QualityRules) -> str | None:
    if len(reference) < rules.min_reference:
        return None
    level = statistics.median(ref.volume for ref in reference)
    if level <= 0 or bar.volume <= 0:
        return None
    ratio = bar.volume / level
    low, high = rules.volume_step
    if low <= ratio <= high or low <= 1 / ratio <= high:
        return (
            f"volume {bar.volume} is {ratio:.4g}x the median volume {level:.6g} of the previous "
            f"{len(reference)} sessions: a units step (shares vs lots of 100)?"
        )
    return None
