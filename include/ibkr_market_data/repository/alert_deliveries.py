"""``alert_deliveries``: what each alert channel was sent, and whether it took it.

Writes are UPSERTs on (alert_key, channel) and leave the commit to the caller. See docs/operations.md#alerts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import Connection


@dataclass(frozen=True)
class OwedAlert:
    """An alert a channel has not taken yet: what to send it again."""

    alert_key: str
    channel: str
    subject: str
    body: str
    attempts: int


def record_alert_delivery(
    conn: Connection,
    alert_key: str,
    channel: str,
    subject: str,
    body: str,
    error: str | None,
) -> None:
    """Record one attempt to send an alert through one channel; ``error`` None means it was delivered.

    :param alert_key: what the alert is about, the same for every channel and every retry.
    :param channel: ``email`` or ``webhook``.
    :param error: why the channel did not take it; None when it did.
    """
    with conn.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO alert_deliveries AS d (alert_key, channel, subject, body, delivered_at, last_error)
            VALUES (%(key)s, %(channel)s, %(subject)s, %(body)s,
                    CASE WHEN %(error)s::text IS NULL THEN NOW() END, %(error)s)
            ON CONFLICT (alert_key, channel) DO UPDATE SET
                subject = EXCLUDED.subject, body = EXCLUDED.body, attempts = d.attempts + 1,
                last_attempt_at = NOW(), delivered_at = EXCLUDED.delivered_at,
                last_error = EXCLUDED.last_error
            """,
            {"key": alert_key, "channel": channel, "subject": subject, "body": body, "error": error},
        )


def owed_alerts(conn: Connection, channels: Sequence[str], max_age: dt.timedelta) -> list[OwedAlert]:
    """Return the alerts ``channels`` have not taken, created within ``max_age``, oldest first."""
    with conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT alert_key, channel, subject, body, attempts FROM alert_deliveries
            WHERE delivered_at IS NULL AND channel = ANY(%s) AND created_at >= NOW() - %s
            ORDER BY created_at, alert_key, channel
            """,
            (list(channels), max_age),
        )
        return [OwedAlert(*row) for row in cursor.fetchall()]


def recorded_channels(conn: Connection, alert_key: str) -> set[str]:
    """Return the channels already sent alert ``alert_key``, whether they took it or not."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT channel FROM alert_deliveries WHERE alert_key = %s", (alert_key,))
        return {row[0] for row in cursor.fetchall()}
