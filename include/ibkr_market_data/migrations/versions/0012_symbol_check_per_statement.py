"""Check a bar's symbol once per statement, not per row: the foreign key becomes statement triggers.

The guarantee stays (no bar of an unknown symbol; no symbol deleted under its bars), at one look-up
per written symbol instead of one per bar. See docs/schema.md#the-symbol-check-0012.
Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

#: Lock the written bars' symbols as the foreign key did (FOR KEY SHARE: a concurrent DELETE waits
#: for this transaction), then refuse the statement if any is not in ``symbols``.
CHECK_SYMBOLS_FUNCTION = """
    CREATE OR REPLACE FUNCTION market_data_check_symbols() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        unknown integer;
    BEGIN
        PERFORM FROM symbols WHERE id IN (SELECT DISTINCT symbol_id FROM written_bars) FOR KEY SHARE;
        SELECT w.symbol_id INTO unknown FROM written_bars w
        WHERE NOT EXISTS (SELECT FROM symbols s WHERE s.id = w.symbol_id) LIMIT 1;
        IF FOUND THEN
            RAISE foreign_key_violation USING MESSAGE = format(
                'a bar of symbol_id %s, which is not in symbols, cannot be stored in %s',
                unknown, TG_TABLE_NAME);
        END IF;
        RETURN NULL;
    END
    $$
"""

#: A symbol with bars can be neither deleted, renumbered nor truncated away, as under the foreign key
#: (``TRUNCATE symbols, market_data`` still empties both).
KEEP_SYMBOLS_FUNCTION = """
    CREATE OR REPLACE FUNCTION symbols_keep_bars() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'TRUNCATE' THEN
            IF EXISTS (SELECT FROM market_data) THEN
                RAISE foreign_key_violation USING MESSAGE =
                    'symbols cannot be truncated while market_data holds bars: truncate both together';
            END IF;
            RETURN NULL;
        END IF;
        IF TG_OP = 'UPDATE' AND NEW.id = OLD.id THEN
            RETURN NULL;
        END IF;
        IF EXISTS (SELECT FROM market_data WHERE symbol_id = OLD.id) THEN
            RAISE foreign_key_violation USING MESSAGE = format(
                'symbol_id %s has bars in market_data: it cannot be deleted or renumbered', OLD.id);
        END IF;
        RETURN NULL;
    END
    $$
"""


def symbol_check_triggers(table: str) -> list[str]:
    """Return the statements that make ``table`` (``market_data`` or one of its partitions) check symbols.

    A statement trigger on the partitioned table fires for statements that name it; one on a leaf
    fires for statements that name that leaf. Both together cover every write.
    """
    return [
        f"CREATE TRIGGER {table}_symbols_{suffix} AFTER {event} ON {table} REFERENCING NEW TABLE AS"
        " written_bars FOR EACH STATEMENT EXECUTE FUNCTION market_data_check_symbols()"
        for event, suffix in (("INSERT", "inserted"), ("UPDATE", "updated"))
    ]


_LEAVES = "SELECT relid::regclass::text FROM pg_partition_tree('market_data') WHERE isleaf ORDER BY 1"


def upgrade() -> None:
    bind = op.get_bind()
    op.execute(CHECK_SYMBOLS_FUNCTION)
    op.execute(KEEP_SYMBOLS_FUNCTION)
    for table in ["market_data", *(row[0] for row in bind.exec_driver_sql(_LEAVES))]:
        for statement in symbol_check_triggers(table):
            op.execute(statement)
    op.execute(
        "CREATE TRIGGER symbols_keep_bars AFTER DELETE OR UPDATE OF id ON symbols"
        " FOR EACH ROW EXECUTE FUNCTION symbols_keep_bars()"
    )
    op.execute(
        "CREATE TRIGGER symbols_truncate_keep_bars AFTER TRUNCATE ON symbols"
        " FOR EACH STATEMENT EXECUTE FUNCTION symbols_keep_bars()"
    )
    # Dropped last: a bar written meanwhile is checked one way or the other.
    op.execute("ALTER TABLE market_data DROP CONSTRAINT market_data_symbol_id_fkey")


def downgrade() -> None:
    bind = op.get_bind()
    op.execute(
        "ALTER TABLE market_data ADD CONSTRAINT market_data_symbol_id_fkey"
        " FOREIGN KEY (symbol_id) REFERENCES symbols(id)"
    )
    op.execute("DROP TRIGGER symbols_truncate_keep_bars ON symbols")
    op.execute("DROP TRIGGER symbols_keep_bars ON symbols")
    for table in ["market_data", *(row[0] for row in bind.exec_driver_sql(_LEAVES))]:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_symbols_inserted ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_symbols_updated ON {table}")
    op.execute("DROP FUNCTION symbols_keep_bars()")
    op.execute("DROP FUNCTION market_data_check_symbols()")
