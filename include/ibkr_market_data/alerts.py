"""Send alerts: a failed run (with its failed symbols when the database answers), overdue or recovered dates.

Channels are Airflow connections (email through ``smtp_default``, a webhook through
``market_data_alerts_webhook``); each channel's delivery is recorded, so the freshness watchdog retries
only a channel that failed, and pings a heartbeat URL when healthy. See docs/operations.md#alerts.
"""

from __future__ import annotations

import copy
import datetime as dt
import html
import json
import logging
import os
import urllib.error
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
HEARTBEAT_CONN_ID = "market_data_heartbeat"
EMAIL_TO_ENV = "IBKR_ALERT_EMAIL_TO"
WEBHOOK_TIMEOUT_SECONDS = 10
#: Connect and statement timeout of a failure alert's database read: the alert goes out without it.
ALERT_DB_TIMEOUT_SECONDS = 5
#: How long each watchdog pass retries a channel that has not taken an alert; then it is given up.
RETRY_WINDOW = dt.timedelta(hours=24)
#: Failed symbols listed one per line in a message; the rest are counted.
MAX_LISTED = 50
EMAIL = "email"
WEBHOOK = "webhook"


# -- channels ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelOutcome:
    """What one channel did with one alert: ``detail`` says where it went, or why it did not."""

    channel: str
    delivered: bool
    detail: str


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
    """Return the URL of a webhook or heartbeat connection.

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


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Leave a redirect unfollowed: urllib would send a POST again as a GET and call it delivered."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        """Follow nothing: the 3xx answer becomes an ``HTTPError``."""
        return None


def _http(request: urllib.request.Request, name: str) -> None:
    """Send ``request``; only a 2xx answer counts. ``name`` names the endpoint in errors, never its URL.

    :raises AlertDeliveryError: unreachable, or answered anything but 2xx (a redirect included).
    """
    opener = urllib.request.build_opener(_RefuseRedirects)
    try:
        with opener.open(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            raise AlertDeliveryError(
                f"{name} answered {exc.code}, a redirect (not followed): set the connection to the final URL"
            ) from exc
        raise AlertDeliveryError(f"{name} answered {exc.code} {exc.reason}") from exc
    except OSError as exc:
        raise AlertDeliveryError(f"{name} refused the alert: {exc}") from exc


def post_webhook(url: str, text: str) -> None:
    """Post ``{"text": text}`` to ``url``, following no redirect.

    :raises AlertDeliveryError: the webhook could not be reached, or did not answer 2xx.
    """
    body = json.dumps({"text": text}).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    _http(request, f"Webhook {WEBHOOK_CONN_ID}")


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


def configured_channels() -> list[str]:
    """Return the channels that have a connection: the webhook first, as its timeout bounds it."""
    channels = []
    if _connection(WEBHOOK_CONN_ID) is not None:
        channels.append(WEBHOOK)
    if _connection(smtp_conn_id()) is not None:
        channels.append(EMAIL)
    return channels


def send_to(channel: str, subject: str, text: str) -> ChannelOutcome:
    """Send one alert through one channel (``email`` or ``webhook``); a failure is the outcome, not raised."""
    try:
        if channel == EMAIL:
            recipients = send_email(smtp_conn_id(), subject, text)
            return ChannelOutcome(EMAIL, True, f"email to {', '.join(recipients)}")
        conn = _connection(WEBHOOK_CONN_ID)
        if conn is None:
            raise AlertDeliveryError(f"Connection {WEBHOOK_CONN_ID} is not configured")
        post_webhook(webhook_url(conn), f"*{subject}*\n{text}")
        return ChannelOutcome(WEBHOOK, True, f"webhook {WEBHOOK_CONN_ID}")
    except AlertDeliveryError as exc:
        return ChannelOutcome(channel, False, str(exc))
    except Exception as exc:  # the SMTP server's or the notifier's own error, whichever it is
        return ChannelOutcome(channel, False, f"email through {smtp_conn_id()}: {exc}")


def send_alert(subject: str, text: str, channels: Sequence[str] | None = None) -> list[ChannelOutcome]:
    """Send one alert to every configured channel and return each one's outcome (empty: logged only).

    A channel that fails does not keep the alert from the others; nothing is raised.

    :param channels: only these channels; default every configured one.
    """
    channels = configured_channels() if channels is None else list(channels)
    if not channels:
        log.warning(
            "Alert %r not sent: no connection %s or %s is configured.\n%s",
            subject,
            smtp_conn_id(),
            WEBHOOK_CONN_ID,
            text,
        )
    outcomes = [send_to(channel, subject, text) for channel in channels]
    for outcome in outcomes:
        if outcome.delivered:
            log.info("Alert %r sent: %s", subject, outcome.detail)
        else:
            log.warning("Alert %r not delivered: %s", subject, outcome.detail)
    return outcomes


def record_outcomes(
    conn: psycopg.Connection, alert_key: str, subject: str, text: str, outcomes: Sequence[ChannelOutcome]
) -> None:
    """Record each channel's outcome of one alert, so a later pass retries only the failed ones."""
    for outcome in outcomes:
        repository.record_alert_delivery(
            conn, alert_key, outcome.channel, subject, text, None if outcome.delivered else outcome.detail
        )


def retry_owed_alerts(conn: psycopg.Connection) -> int:
    """Send every alert a configured channel has not taken again, through that channel only (commits).

    :return: how many deliveries are still owed.
    """
    owed = 0
    for alert in repository.owed_alerts(conn, configured_channels(), RETRY_WINDOW):
        outcome = send_to(alert.channel, alert.subject, alert.body)
        record_outcomes(conn, alert.alert_key, alert.subject, alert.body, [outcome])
        conn.commit()  # per delivery: a crash later must not send this one again
        if outcome.delivered:
            log.info("Alert %r sent on retry %d: %s", alert.subject, alert.attempts, outcome.detail)
        else:
            owed += 1
            log.warning("Alert %r still not delivered: %s", alert.subject, outcome.detail)
    return owed


def ping_heartbeat() -> bool:
    """GET the ``market_data_heartbeat`` URL, following no redirect; return whether it answered 2xx.

    A failed ping is logged, not raised: the monitoring service notices the silence.
    """
    conn = _connection(HEARTBEAT_CONN_ID)
    if conn is None:
        return False
    try:
        _http(urllib.request.Request(webhook_url(conn), method="GET"), f"Heartbeat {HEARTBEAT_CONN_ID}")
    except AlertDeliveryError as exc:
        log.warning("%s", exc)
        return False
    log.info("Heartbeat %s pinged", HEARTBEAT_CONN_ID)
    return True


# -- a failed run -----------------------------------------------------------------------------


def failed_run_message(
    dag_id: str,
    run_id: str,
    failures: Sequence[Mapping[str, Any]] | None,
    reason: str | None = None,
    unread: str | None = None,
) -> tuple[str, str]:
    """Return the (subject, text) of a failed run's alert: every failed or unfinished symbol and why.

    :param failures: the run's failed and unfinished symbols; None when they are not known.
    :param unread: why the database could not be read, when it could not.
    """
    failed = [row for row in failures or () if row["status"] == "failed"]
    unfinished = [row for row in failures or () if row["status"] != "failed"]
    counts = []
    if failed:
        counts.append(f"{len(failed)} symbols failed")
    if unfinished:
        counts.append(f"{len(unfinished)} never finished")
    subject = f"{dag_id} run {run_id} failed" + (f": {', '.join(counts)}" if counts else "")
    lines = [subject + "."]
    if reason:
        lines.append(f"Airflow says: {reason}")
    if failures is None:
        if unread:
            lines.append(f"Failed symbols unknown: the market-data database could not be read ({unread}).")
        lines.append("See the run's task logs.")
        return subject, "\n".join(lines)
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


def failed_run_of(context: Mapping[str, Any]) -> tuple[str, str]:
    """Return (dag_id, run_id) of a failure callback's context; without a last task it has no ``dag_run``."""
    dag_run = context.get("dag_run")
    if dag_run is not None:
        return dag_run.dag_id, dag_run.run_id
    dag = context.get("dag")
    return getattr(dag, "dag_id", "unknown DAG"), str(context.get("run_id") or "unknown run")


def open_market_db_briefly() -> psycopg.Connection:
    """Open the market-data database with ``ALERT_DB_TIMEOUT_SECONDS`` connect and statement timeouts.

    The connection's own ``connect_timeout`` and ``options`` extras win.
    """
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from ibkr_market_data.settings import MARKET_DATA_CONN_ID

    configured = PostgresHook(postgres_conn_id=MARKET_DATA_CONN_ID).connection
    bounded = copy.copy(configured)  # the hook's own copy stays as configured
    bounded.extra = json.dumps({"connect_timeout": ALERT_DB_TIMEOUT_SECONDS, **configured.extra_dejson})
    hook = PostgresHook(
        postgres_conn_id=MARKET_DATA_CONN_ID,
        connection=bounded,
        options=f"-c statement_timeout={ALERT_DB_TIMEOUT_SECONDS * 1000}",
    )
    return hook.get_conn()  # type: ignore[return-value]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class MarketDataFailureNotifier(BaseNotifier):
    """DAG ``on_failure_callback``: one alert per failed run, on every channel that takes it.

    The alert is built from the callback's context; the run's failed symbols are added when the
    database answers within ``ALERT_DB_TIMEOUT_SECONDS``. Each channel's delivery is recorded there, so
    the watchdog retries a failed channel: Airflow's DAG processor never retries a callback.

    :param list_symbols: list the run's failed symbols (False for a DAG that collects nothing).
    """

    template_fields = ()

    def __init__(self, list_symbols: bool = True) -> None:
        super().__init__()
        self.list_symbols = list_symbols

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Render nothing: a DAG-level callback may hand over a serialized DAG without a template env."""

    def notify(self, context: Any) -> None:
        """Send the alert of the failed run in ``context`` and record each channel's delivery."""
        dag_id, run_id = failed_run_of(context)
        conn: psycopg.Connection | None = None
        failures = None
        unread = None
        try:
            conn = open_market_db_briefly()
            if self.list_symbols:
                failures = repository.run_failure_details(conn, dag_id, run_id)
                conn.commit()  # not idle in a transaction while the channels take their time
        except Exception as exc:  # no database, however it fails, keeps the alert back
            unread = _first_line(exc)
            log.warning("Alert of %s %s sent without database details: %s", dag_id, run_id, unread)
            if conn is not None:
                conn.close()
                conn = None
        subject, text = failed_run_message(
            dag_id, run_id, failures, context.get("reason"), unread if self.list_symbols else None
        )
        outcomes = send_alert(subject, text)
        owed = [outcome.channel for outcome in outcomes if not outcome.delivered]
        if conn is None:
            if owed:
                log.error("Alert %r not delivered to %s, and not recorded for a retry", subject, owed)
            return
        try:
            with conn:  # commits, and closes
                record_outcomes(conn, f"failed run {dag_id} {run_id}", subject, text, outcomes)
        except Exception as exc:  # e.g. the database went away meanwhile
            if owed:
                log.error(
                    "Alert %r not delivered to %s, and not recorded for a retry: %s",
                    subject,
                    owed,
                    _first_line(exc),
                )


# -- freshness --------------------------------------------------------------------------------


@dataclass
class FreshnessCheck:
    """What one watchdog pass found: gaps to announce now, and announced gaps now complete."""

    new_gaps: list[coverage.CoverageRow] = field(default_factory=list)
    recovered: list[repository.AlertedGap] = field(default_factory=list)
    still_open: int = 0
    #: Deliveries of this or earlier alerts that a channel has not taken yet, after the pass.
    undelivered: int = 0

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
    """Run one watchdog pass (commits).

    Send again what a channel has not taken yet, through that channel only; announce new gaps and
    recoveries once, on every channel, and remember them with each channel's delivery.
    """
    owed = retry_owed_alerts(conn)
    check = check_freshness(conn, as_of, delay, lookback_days)
    message = check.message(delay)
    if message is None:
        log.info(
            "Freshness as of %s: nothing new (%d gaps announced before, still open)", as_of, check.still_open
        )
    else:
        subject, text = message
        outcomes = send_alert(subject, text)
        record_outcomes(conn, f"freshness {as_of.isoformat()}", subject, text, outcomes)
        record_check(conn, check, as_of)
        conn.commit()
        owed += sum(not outcome.delivered for outcome in outcomes)
    check.undelivered = owed
    return check


def watchdog_task(params: Mapping[str, Any], as_of: dt.datetime) -> dict[str, Any]:
    """Run the watchdog DAG's pass as of the run's logical date; ping the heartbeat if nothing is owed."""
    from ibkr_market_data.tasks.database import market_connection

    delay = (
        dt.timedelta(minutes=int(params["delay_minutes"]))
        if params.get("delay_minutes") is not None
        else coverage.freshness_delay()
    )
    with market_connection() as conn:
        check = run_watchdog(conn, as_of, delay, int(params.get("lookback_days") or 7))
    if check.undelivered:
        log.warning("Heartbeat not pinged: %d alert deliveries are still owed", check.undelivered)
    return {
        "new_gaps": len(check.new_gaps),
        "recovered": len(check.recovered),
        "still_open": check.still_open,
        "undelivered": check.undelivered,
        "heartbeat": not check.undelivered and ping_heartbeat(),
    }
