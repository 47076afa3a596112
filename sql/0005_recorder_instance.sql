-- Several recorders on one database: each signal and order the ledger writes names the
-- recorder that wrote it (RecorderConfig.instance_name), so a restarting recorder
-- recovers its own open orders and trade cycles, not every process's. NULL: written
-- before this migration, or by something else; every recorder counts those as its own.
ALTER TABLE signals ADD COLUMN recorder_instance VARCHAR(64);
ALTER TABLE orders ADD COLUMN recorder_instance VARCHAR(64);

-- Recovery's reads: a recorder's undecided signals and open orders among everyone's.
CREATE INDEX idx_signals_recorder_instance ON signals(recorder_instance, status);
CREATE INDEX idx_orders_open_by_instance ON orders(recorder_instance)
    WHERE status NOT IN ('FILLED', 'CANCELED', 'REJECTED', 'EXPIRED');
