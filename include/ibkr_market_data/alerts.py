"""Send alerts: a failed run with its failed symbols and reasons, overdue or recovered trading dates.

Channels are Airflow connections (email through ``smtp_default``, a Slack-compatible webhook through
``market_data_alerts_webhook``); with neither, an alert is logged as a warning. See docs/operations.md.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import os
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

from ibkr_market_data import coverage, repository
from ibkr_market_data.errors import AlertDeliveryError

if TYPE_CHECKING:
    import psycopg
    from airflow.sdk import Connection as AirflowConnection

log = logging.getLogger(__name__)

WEBHOOK_CONN_ID = "market_data_alerts_webhook"
EMAIL_TO_ENV = "IBKR_ALERT_EMAIL_TO"
WEBHOOK_TIMEOUT_SECONDS = 10
#: Failed symbols listed one per line in a message; the rest are counted.
MAX_LISTED = 50


# -- channels ---------------------------------------------------------------------------------


def _connection(conn_id: str) -> AirflowConnection | None:
    """Return the connection ``conn_id``, or None when it is not configured anywhere."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def smtp_conn_id() -> str:
    """Return the id of the email connection: ``[email] email_conn_id``, by default ``smtp_default``."""
    from airflow.configuration import conf

    return conf.get("email", "email_conn_id", fallback="smtp_default")


def webhook_url(conn: AirflowConnection) -> str:
    """Return the URL of a webhook connection.

    ``host`` is the whole URL, or a host name completed by ``schema`` (``https``/``http``), ``port``
    and an ``endpoint`` extra.

    :raises AlertDeliveryError: the connection has no host.
    """
    host = (conn.host or "").strip()
    if not host:
        raise AlertDeliveryError(f"Connection {conn.conn_id!r} has no host: set it to the webhook's URL")
    schema = (conn.schema or "").strip()
    if "://" in host:
        url = host
    else:
        web = ("http", "https")
        scheme = schema if schema in web else conn.conn_type if conn.conn_type in web else "https"
        url = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
        if schema and schema not in web:
            url += "/" + schema.lstrip("/")  # a URI's path lands in ``schema``
    endpoint = str(conn.extra_dejson.get("endpoint") or "").strip()
    if endpoint:
        url = url.rstrip("/") + "/" + endpoint.lstrip("/")
    return url


def post_webhook(url: str, text: str) -> None:
    """Post ``{"text": text}`` to ``url``.

    :raises AlertDeliveryError: the webhook could not be reached or refused the post.
    """
    body = json.dumps({"text": text}).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:  # noqa: S310
            response.read()
    except OSError as exc:
        raise AlertDeliveryError(f"Webhook {WEBHOOK_CONN_ID} refused the alert: {exc}") from exc


def send_email(conn_id: str, subject: str, text: str) -> list[str]:
    """Send ``text`` through the smtp provider's notifier and return the recipients.

    :raises AlertDeliveryError: neither ``IBKR_ALERT_EMAIL_TO`` nor the ``from_email`` extra names one.
    """
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    notifier = SmtpNotifier(
        to=[],
        subject=subject,
        html_content=f"<pre>{html.escape(text)}</pre>",
        smtp_conn_id=conn_id,
    )
    recipients = [item.strip() for item in os.environ.get(EMAIL_TO_ENV, "").split(",") if item.strip()]
    if not recipients:
        from_email = notifier.hook.from_email
        if not from_email:
            raise AlertDeliveryError(
                f"No recipient for the alert email: set {EMAIL_TO_ENV} or the from_email extra of "
                f"connection {conn_id!r}"
            )
        recipients = [from_email]
    notifier.to = recipients
    notifier.notify({})  # type: ignore[arg-type]
    return recipients


def send_alert(subject: str, text: str) -> list[str]:
    """Send one alert to every configured channel and return what it went to (empty: logged only).

    A channel that fails does not keep the alert from the others.

    :raises AlertDeliveryError: a channel failed; the message names each (the task's retry sends again).
    """
    sent: list[str] = []
    failed: list[str] = []
    smtp_id = smtp_conn_id()
    if _connection(smtp_id) is not None:
        try:
            recipients = send_email(smtp_id, subject, text)
            sent.append(f"email to {', '.join(recipients)}")
        except Exception as exc:  # the SMTP server's or the notifier's own error, whichever it is
            failed.append(f"email through {smtp_id}: {exc}")
    webhook = _connection(WEBHOOK_CONN_ID)
    if webhook is not None:
        try:
            post_webhook(webhook_url(webhook), f"*{subject}*\n{text}")
            sent.append(f"webhook {WEBHOOK_CONN_ID}")
        except AlertDeliveryError as exc:
            failed.append(str(exc))
    if sent:
        log.info("Alert %r sent: %s", subject, "; ".join(sent))
    if failed:
        raise AlertDeliveryError(f"Alert {subject!r} not delivered: " + "; ".join(failed))
    if not sent:
        log.warning(
            "Alert %r not sent: no connection %s or %s is configured.\n%s",
            subject,
            smtp_id,
            WEBHOOK_CONN_ID,
            text,
        )
    return sent


# -- a failed run -----------------------------------------------------------------------------


def failed_run_message(
    dag_id: str, run_id: str, failures: Sequence[Mapping[str, Any]], reason: str | None = None
) -> tuple[str, str]:
    """Return the (subject, text) of a failed run's alert: every failed or unfinished symbol and why."""
    failed = [row for row in failures if row["status"] == "failed"]
    unfinished = [row for row in failures if row["status"] != "failed"]
    counts = []
    if failed:
        counts.append(f"{len(failed)} symbols failed")
    if unfinished:
        counts.append(f"{len(unfinished)} never finished")
    subject = f"{dag_id} run {run_id} failed" + (f": {', '.join(counts)}" if counts else "")
    lines = [subject + "."]
    if reason:
        lines.append(f"Airflow says: {reason}")
    for row in list(failures)[:MAX_LISTED]:
        day = row["date"] if row["first_date"] == row["date"] else f"{row['first_date']}..{row['date']}"
        if row["status"] == "failed":
            code = f"IB {row['error_code']}" if row["error_code"] is not None else "no IB code"
            lines.append(f"- {row['symbol']} {day}: {row['error_message']} ({code}, try {row['try_number']})")
        else:
            lines.append(f"- {row['symbol']} {day}: no outcome (try {row['try_number']} never finished)")
    if len(failures) > MAX_LISTED:
        lines.append(f"... and {len(failures) - MAX_LISTED} more (see the dashboard's failures)")
    if not failures:
        lines.append("No symbol failed: the run failed before or after collecting; see its task logs.")
    return subject, "\n".join(lines)


class MarketDataFailureNotifier(BaseNotifier):
    """DAG ``on_failure_callback``: one alert naming the run's failed symbols and their reasons."""

    template_fields = ()

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Render nothing: a DAG-level callback may hand over a serialized DAG without a template env."""

    def notify(self, context: Any) -> None:
        """Send the alert of the failed run in ``context``."""
        from ibkr_market_data.tasks.database import market_connection

        dag_run = context["dag_run"]
        with market_connection() as conn:
            failures = repository.run_failure_details(conn, dag_run.dag_id, dag_run.run_id)
        subject, text = failed_run_message(dag_run.dag_id, dag_run.run_id, failures, context.get("reason"))
        send_alert(subject, text)


# -- freshness --------------------------------------------------------------------------------


@dataclass
class FreshnessCheck:
    """What one watchdog pass found: gaps to announce now, and announced gaps now complete."""

    new_gaps: list[coverage.CoverageRow] = field(default_factory=list)
    recovered: list[repository.AlertedGap] = field(default_factory=list)
    still_open: int = 0

    def message(self, delay: dt.timedelta) -> tuple[str, str] | None:
        """Return the (subject, text) to announce, or None when nothing is new."""
        if not self.new_gaps and not self.recovered:
            return None
        parts = []
        if self.new_gaps:
            parts.append(f"{len(self.new_gaps)} trading dates incomplete")
        if self.recovered:
            parts.append(f"{len(self.recovered)} recovered")
        subject = "Market data freshness: " + ", ".join(parts)
        hours = delay.total_seconds() / 3600
        lines = []
        for gap in self.new_gaps:
            lines.append(
                f"- LATE {gap.exchange} {gap.date}: {gap.missing} of {gap.expected} symbols missing "
                f"{hours:g} h after the close "
                f"({gap.stored} stored, {gap.failed} failed, {gap.no_data} no data)"
            )
        for recovered in self.recovered:
            lines.append(
                f"- RECOVERED {recovered.exchange} {recovered.trading_date}: complete now "
                f"({recovered.expected} symbols)"
            )
        return subject, "\n".join(lines)


def check_freshness(
    conn: psycopg.Connection, as_of: dt.datetime, delay: dt.timedelta, lookback_days: int = 7
) -> FreshnessCheck:
    """Compare what is due by ``as_of`` with what was announced; the caller sends, then records."""
    announced = {(gap.exchange, gap.trading_date): gap for gap in repository.open_freshness_alerts(conn)}
    gaps = coverage.overdue_gaps(conn, as_of, delay, lookback_days)
    check = FreshnessCheck(new_gaps=[gap for gap in gaps if (gap.exchange, gap.date) not in announced])
    if announced:
        days = [day for _, day in announced]
        start = max(min(days), max(days) - dt.timedelta(days=coverage.MAX_RANGE_DAYS))
        now_incomplete = {
            (row.exchange, row.date) for row in coverage.coverage(conn, start, max(days)) if not row.complete
        }
        check.recovered = [
            gap for key, gap in announced.items() if key not in now_incomplete and key[1] >= start
        ]
        check.still_open = len(announced) - len(check.recovered)
    return check


def record_check(conn: psycopg.Connection, check: FreshnessCheck, as_of: dt.datetime) -> None:
    """Remember what was announced, so the next pass repeats nothing."""
    for gap in check.new_gaps:
        repository.record_freshness_alert(
            conn, repository.AlertedGap(gap.exchange, gap.date, gap.expected, gap.missing), as_of
        )
    for recovered in check.recovered:
        repository.mark_gap_recovered(conn, recovered.exchange, recovered.trading_date, as_of)


def run_watchdog(
    conn: psycopg.Connection, as_of: dt.datetime, delay: dt.timedelta, lookback_days: int = 7
) -> FreshnessCheck:
    """Run one watchdog pass: announce new gaps and recoveries once, then remember them (commits)."""
    check = check_freshness(conn, as_of, delay, lookback_days)
    message = check.message(delay)
    if message is None:
        log.info(
            "Freshness as of %s: nothing new (%d gaps announced before, still open)", as_of, check.still_open
        )
        return check
    send_alert(*message)
    record_check(conn, check, as_of)
    conn.commit()
    return check


def watchdog_task(params: Mapping[str, Any], as_of: dt.datetime) -> dict[str, int]:
    """Run the watchdog DAG's pass as of the run's logical date, on the market-data connection."""
    from ibkr_market_data.tasks.database import market_connection

    delay = (
        dt.timedelta(minutes=int(params["delay_minutes"]))
        if params.get("delay_minutes") is not None
        else coverage.freshness_delay()
    )
    with market_connection() as conn:
        check = run_watchdog(conn, as_of, delay, int(params.get("lookback_days") or 7))
    return {
        "new_gaps": len(check.new_gaps),
        "recovered": len(check.recovered),
        "still_open": check.still_open,
    }
