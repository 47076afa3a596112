-- What the ledger needs beyond the seed's columns.
--
-- orders.quantity_filled: the sum of the order's fills, kept by the same
--   statement that inserts a fill (only when the fill is new, so a replayed
--   fill adds nothing).
-- orders.ledger_seq: the journal sequence number of the last event applied to
--   the row; an update applies only when it is newer, so replaying a journal
--   suffix never moves an order back to an older status.
-- orders.exit_reason: the reason an exit order closes a trade cycle, kept so a
--   restarted ledger still knows it.
-- system_logs.log_id: an event id that makes replaying a log row idempotent.
ALTER TABLE orders
    ADD COLUMN quantity_filled NUMERIC(38, 18) NOT NULL DEFAULT 0
        CHECK (quantity_filled >= 0),
    ADD COLUMN ledger_seq BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN exit_reason VARCHAR(32) CHECK (exit_reason IN (
        'TP_HIT', 'SL_HIT', 'TIME_EXIT', 'MANUAL_CLOSE',
        'TRAILING_STOP', 'SIGNAL_EXIT', 'RISK_LIMIT', 'SHUTDOWN'));

ALTER TABLE system_logs ADD COLUMN log_id UUID;
ALTER TABLE system_logs ADD CONSTRAINT uq_system_logs_log_id UNIQUE (log_id);
