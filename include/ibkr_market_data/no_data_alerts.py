"""Alert when a run's share of IB "no data" (162) answers is unusual: a farm answering empty for all.

Judged for the whole run and per listing exchange against a threshold and the trailing median of
earlier runs; sent through the failure alerts' channels, once per run. See docs/operations.md#no-data.
"""

from __future__ import annotations

import logging
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ibkr_market_data import repository
from ibkr_market_data.errors import InvalidQualitySettingError

if TYPE_CHECKING:
    import psycopg

    from ibkr_market_data.alerts import ChannelOutcome

log = logging.getLogger(__name__)

SHARE_ENV = "IBKR_NO_DATA_ALERT_SHARE"
MIN_TARGETS_ENV = "IBKR_NO_DATA_ALERT_MIN_TARGETS"
#: A run alerts when at least this share of its requested targets was answered with no data ...
DEFAULT_SHARE = 0.2
#: ... and at least this many targets were requested: one illiquid symbol of three is no news.
DEFAULT_MIN_TARGETS = 20
#: ... and the share is at least this many times the median share of the earlier runs.
MEDIAN_FACTOR = 2.0
#: How many earlier runs (with at least the minimum of targets) the median is taken over.
TRAILING_RUNS = 20
#: A share of at least this alerts whatever the usual: a farm broken for weeks stays news.
ALWAYS_UNUSUAL = 0.5


@dataclass(frozen=True)
class NoDataRule:
    """When a share is unusual: of ``min_targets``, at least ``share`` and twice the usual (or a half)."""

    share: float = DEFAULT_SHARE
    min_targets: int = DEFAULT_MIN_TARGETS


def rule_from_env(environ: Mapping[str, str] | None = None) -> NoDataRule:
    """Return the rule of ``IBKR_NO_DATA_ALERT_SHARE`` and ``IBKR_NO_DATA_ALERT_MIN_TARGETS``.

    :raises InvalidQualitySettingError: a value is not a share from 0 to 1 (exclusive of 0) or a
        whole number of at least 1; the message names the variable.
    """
    environ = os.environ if environ is None else environ
    share_text = environ.get(SHARE_ENV, "").strip()
    min_text = environ.get(MIN_TARGETS_ENV, "").strip()
    try:
        share = float(share_text) if share_text else DEFAULT_SHARE
        if not 0 < share <= 1:
            raise ValueError
    except ValueError:
        raise InvalidQualitySettingError(
            f"{SHARE_ENV}={share_text!r}: give a share above 0 and at most 1, e.g. 0.2"
        ) from None
    try:
        min_targets = int(min_text) if min_text else DEFAULT_MIN_TARGETS
        if min_targets < 1:
            raise ValueError
    except ValueError:
        raise InvalidQualitySettingError(
            f"{MIN_TARGETS_ENV}={min_text!r}: give a whole number of targets of at least 1, e.g. 20"
        ) from None
    return NoDataRule(share, min_targets)


@dataclass(frozen=True)
class UnusualShare:
    """A share of no-data answers found unusual: of the whole run (``ALL``) or one exchange."""

    exchange: str
    no_data: int
    requested: int
    usual: float | None  # the trailing median; None without earlier runs

    def line(self) -> str:
        """Return the finding as one line of the alert."""
        usual = "no earlier runs" if self.usual is None else f"usually {self.usual:.0%}"
        where = "all exchanges" if self.exchange == repository.ALL_EXCHANGES else self.exchange
        return (
            f"- {where}: {self.no_data} of {self.requested} requested targets answered no data "
            f"({self.no_data / self.requested:.0%}; {usual})"
        )


def unusual_shares(
    shares: Sequence[repository.NoDataShare], earlier: Mapping[str, Sequence[float]], rule: NoDataRule
) -> list[UnusualShare]:
    """Return the shares that are unusual by ``rule`` against the ``earlier`` runs' shares per exchange."""
    found = []
    for row in shares:
        if row.requested < rule.min_targets:
            continue
        history = earlier.get(row.exchange) or []
        usual = statistics.median(history) if history else None
        if row.share >= max(rule.share, min(MEDIAN_FACTOR * (usual or 0.0), ALWAYS_UNUSUAL)):
            found.append(UnusualShare(row.exchange, row.no_data, row.requested, usual))
    return found


def alert_key(dag_id: str, run_id: str) -> str:
    """Return the key the alert of one run's unusual share is recorded under, per channel."""
    return f"no-data share {dag_id} {run_id}"


def message(dag_id: str, run_id: str, found: Sequence[UnusualShare], rule: NoDataRule) -> tuple[str, str]:
    """Return the (subject, text) of the alert."""
    whole = next((item for item in found if item.exchange == repository.ALL_EXCHANGES), found[0])
    subject = (
        f"{dag_id} run {run_id}: IB answered no data for {whole.no_data} of {whole.requested} targets"
        + ("" if whole.exchange == repository.ALL_EXCHANGES else f" on {whole.exchange}")
    )
    lines = [
        subject + ".",
        "An unusual share of IB's answers were 162 (no data): a market-data farm may be answering "
        "empty. The run is not failed. The next run asks for these sessions again; a second empty "
        "answer settles them as having no data, and only a backfill with recheck_no_data asks again.",
        *(item.line() for item in found),
        f"Alerting at a share of at least {rule.share:.0%} and {MEDIAN_FACTOR:g} times the usual (at "
        f"most {ALWAYS_UNUSUAL:.0%}), from {rule.min_targets} targets ({SHARE_ENV}, {MIN_TARGETS_ENV}).",
    ]
    return subject, "\n".join(lines)


def check_run(
    conn: psycopg.Connection, dag_id: str, run_id: str, rule: NoDataRule | None = None
) -> list[UnusualShare]:
    """Alert on every channel if the run's no-data share is unusual; return what was unusual (commits).

    Reads the run's ``run_metrics`` rows (record them first). Each channel is sent the alert once:
    a retried or repeated summary sends none again, and a channel that did not take it is retried by
    the freshness watchdog like any failed alert.

    :raises InvalidQualitySettingError: a setting of ``rule_from_env`` is bad.
    """
    from ibkr_market_data import alerts

    rule = rule or rule_from_env()
    shares = repository.run_no_data_shares(conn, dag_id, run_id)
    earlier = repository.earlier_no_data_shares(conn, dag_id, run_id, rule.min_targets, TRAILING_RUNS)
    found = unusual_shares(shares, earlier, rule)
    if not found:
        whole = next((row for row in shares if row.exchange == repository.ALL_EXCHANGES), None)
        if whole is not None:
            log.info(
                "No-data answers: %d of %d requested targets (%.0f%%), not unusual",
                whole.no_data,
                whole.requested,
                100 * whole.share,
            )
        return []
    subject, text = message(dag_id, run_id, found, rule)
    log.warning("%s", text)
    key = alert_key(dag_id, run_id)
    sent_before = repository.recorded_channels(conn, key)
    conn.commit()  # not idle in a transaction while the channels take their time
    channels = None
    if sent_before:
        log.info("No-data alert already sent to %s: not sent again", ", ".join(sorted(sent_before)))
        channels = [channel for channel in alerts.configured_channels() if channel not in sent_before]
    outcomes: list[ChannelOutcome] = alerts.send_alert(subject, text, channels) if channels != [] else []
    alerts.record_outcomes(conn, key, subject, text, outcomes)
    conn.commit()
    return found
