-- Indexes for the read side (galfriday_recorder.query): each serves one query's
-- filter and order, so it reads only the rows it returns on a table of millions.

-- Trades by strategy or by pair, newest exit first.
CREATE INDEX idx_trades_strategy_exit ON trades(strategy_id, exit_timestamp);
CREATE INDEX idx_trades_pair_exit ON trades(trading_pair, exit_timestamp);

-- Fills of a pair, newest first.
CREATE INDEX idx_fills_pair_filled_at ON fills(trading_pair, filled_at);

-- Open orders: a few among millions of finished ones.
CREATE INDEX idx_orders_open ON orders(trading_pair, order_pk)
    WHERE status NOT IN ('FILLED', 'CANCELED', 'REJECTED', 'EXPIRED');

-- Peak equity (recovery's risk state) without reading every snapshot.
CREATE INDEX idx_portfolio_snapshots_equity ON portfolio_snapshots(total_equity);
