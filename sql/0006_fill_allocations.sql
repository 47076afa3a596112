-- A fill of an order without a signal (a close-all, a reconciliation) reduces the
-- open trade cycles of its pair, oldest first. Which cycles it reduced, and by how
-- much, is stored with the fill (one transaction), so a cycle is rebuilt from its
-- signal's own fills and these rows alone: a restart, or a signal read back on
-- demand, needs neither the pair's whole history nor the other cycles' state, and
-- gets exactly what the ledger derived. `galfriday-recorder verify` checks these
-- rows against an independent replay of the oldest-first rule.
CREATE TABLE fill_allocations (
    fill_pk   INTEGER NOT NULL REFERENCES fills(fill_pk),
    signal_id UUID NOT NULL REFERENCES signals(signal_id),
    quantity  NUMERIC(38, 18) NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (fill_pk, signal_id)
);
CREATE INDEX idx_fill_allocations_signal_id ON fill_allocations(signal_id);

-- History written before this migration: the fills are replayed once, in stored order,
-- by the rule the ledger applied to them (each recorder's signal-less fill reduced its
-- own open cycles and those without an instance, oldest open first; an own exit beyond
-- the open position reduced nothing), so its cycles rebuild as they were. Row by row:
-- it reads every fill once, in this migration's transaction.
DO $$
DECLARE
    f RECORD;
    c RECORD;
    rest NUMERIC;
    part NUMERIC;
    opened BIGINT := 0;
BEGIN
    CREATE TEMP TABLE backfill_open (
        signal_id UUID PRIMARY KEY, side TEXT, trading_pair TEXT, exchange TEXT,
        owner TEXT, opened BIGINT, open_qty NUMERIC
    ) ON COMMIT DROP;
    CREATE TEMP TABLE backfill_owner (signal_id UUID PRIMARY KEY, owner TEXT) ON COMMIT DROP;
    FOR f IN
        SELECT fl.fill_pk, fl.side, fl.trading_pair, fl.exchange, fl.quantity_filled AS qty,
               o.signal_id, o.recorder_instance AS owner, s.side AS signal_side,
               s.trading_pair AS signal_pair, s.exchange AS signal_exchange
        FROM fills fl JOIN orders o USING (order_pk)
        LEFT JOIN signals s ON s.signal_id = o.signal_id
        ORDER BY fl.fill_pk
    LOOP
        IF f.signal_id IS NOT NULL THEN
            -- A cycle's recorder is the one whose fill first entered the signal.
            INSERT INTO backfill_owner VALUES (f.signal_id, f.owner) ON CONFLICT DO NOTHING;
            IF f.side = f.signal_side THEN
                opened := opened + 1;
                INSERT INTO backfill_open AS b
                SELECT f.signal_id, f.signal_side, f.signal_pair, f.signal_exchange,
                       w.owner, opened, f.qty
                FROM backfill_owner w WHERE w.signal_id = f.signal_id
                ON CONFLICT (signal_id) DO UPDATE SET open_qty = b.open_qty + EXCLUDED.open_qty;
            ELSE
                UPDATE backfill_open SET open_qty = open_qty - LEAST(f.qty, open_qty)
                WHERE signal_id = f.signal_id;
                DELETE FROM backfill_open WHERE signal_id = f.signal_id AND open_qty = 0;
            END IF;
        ELSE
            rest := f.qty;
            FOR c IN
                SELECT b.signal_id, b.open_qty FROM backfill_open b
                WHERE b.trading_pair = f.trading_pair AND b.exchange = f.exchange
                  AND b.side <> f.side
                  AND (f.owner IS NULL OR b.owner IS NULL OR b.owner = f.owner)
                ORDER BY b.opened
            LOOP
                EXIT WHEN rest <= 0;
                part := LEAST(rest, c.open_qty);
                rest := rest - part;
                INSERT INTO fill_allocations (fill_pk, signal_id, quantity)
                VALUES (f.fill_pk, c.signal_id, part);
                UPDATE backfill_open SET open_qty = open_qty - part WHERE signal_id = c.signal_id;
                DELETE FROM backfill_open WHERE signal_id = c.signal_id AND open_qty = 0;
            END LOOP;
        END IF;
    END LOOP;
END
$$;
