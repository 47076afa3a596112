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
