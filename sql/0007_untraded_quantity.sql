-- A start's read bounded by what is open, not by the history.
--
-- trades.derived: the ledger derived the row from its signal's fills (false: a trade
-- the bot recorded itself with record_trade, or a row written before this migration
-- until a start finds that the ledger derives it).
--
-- signals.untraded_quantity: the signal's entry fills (fills of its orders on its
-- side) less its derived trades' quantities. The fill statement adds each new entry
-- fill and the derived trade's statement takes off its quantity, in the transaction
-- that writes them (a replay inserts nothing and so changes nothing). A start reads
-- the signals where it is not zero, through the partial index below, so its read
-- grows with the cycles left open, not with the history.
-- `galfriday-recorder verify` checks it.
ALTER TABLE trades ADD COLUMN derived BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE signals ADD COLUMN untraded_quantity NUMERIC NOT NULL DEFAULT 0;

-- History: no trade is known to be derived yet (SQL cannot tell the bot's from the
-- ledger's), so every signal with entry fills counts them all. The first start reads
-- each such signal once, marks the trades its fills derive, and sets the column again.
UPDATE signals s SET untraded_quantity = e.quantity
FROM (SELECT o.signal_id, sum(f.quantity_filled) AS quantity
      FROM orders o JOIN fills f ON f.order_pk = o.order_pk
      JOIN signals g ON g.signal_id = o.signal_id AND g.side = f.side
      GROUP BY o.signal_id) e
WHERE s.signal_id = e.signal_id;

CREATE INDEX idx_signals_untraded ON signals (signal_id) WHERE untraded_quantity <> 0;
-- The start's other signals: the undecided ones.
CREATE INDEX idx_signals_proposed ON signals (signal_id) WHERE status = 'PROPOSED';
