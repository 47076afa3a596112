-- A start's read bounded by what is open, not by the history.
--
-- signals.untraded_quantity: the signal's entry fills (fills of its orders on its
-- side) not yet in a trade the ledger derived. The fill statement adds each new entry
-- fill and the derived-trade statement takes off each new trade's quantity, in the
-- transaction that writes them (a replay inserts nothing and so changes nothing). A
-- start reads the signals where it is not zero, through the partial index below, so
-- its read grows with the cycles left open, not with the history; trades the bot
-- records itself (record_trade) do not count. `galfriday-recorder verify` recomputes it.
ALTER TABLE signals ADD COLUMN untraded_quantity NUMERIC NOT NULL DEFAULT 0;

-- History: before this migration every trades row counted as derived (the start's
-- earlier rule), so that rule sets the column once.
UPDATE signals s SET untraded_quantity = e.quantity - COALESCE(
    (SELECT sum(t.quantity) FROM trades t WHERE t.signal_id = s.signal_id), 0)
FROM (SELECT o.signal_id, sum(f.quantity_filled) AS quantity
      FROM orders o JOIN fills f ON f.order_pk = o.order_pk
      JOIN signals g ON g.signal_id = o.signal_id AND g.side = f.side
      GROUP BY o.signal_id) e
WHERE s.signal_id = e.signal_id;

CREATE INDEX idx_signals_untraded ON signals (signal_id) WHERE untraded_quantity <> 0;
-- The start's other signals: the undecided ones.
CREATE INDEX idx_signals_proposed ON signals (signal_id) WHERE status = 'PROPOSED';
