-- The seven PostgreSQL tables of the Gal-Friday schema (v0.1, 2025-04-27),
-- with every column, default, CHECK, foreign key, unique constraint and index
-- the seed lists, plus the CHECKs it implies.
--
-- Money and quantities are NUMERIC(38,18): 20 integer digits and 18 fractional
-- digits. Kraken quotes prices with at most 10 decimals and lots with at most
-- 10 (token transfers use 18), so every wire value is stored exactly; P&L of
-- qty x price products stays exact too. Volume-weighted averages are rounded
-- half-even to 18 decimals by the ledger before they are written.

CREATE TABLE signals (
    signal_id            UUID PRIMARY KEY,
    trading_pair         VARCHAR(16)  NOT NULL,
    exchange             VARCHAR(32)  NOT NULL,
    strategy_id          VARCHAR(64)  NOT NULL,
    side                 VARCHAR(4)   NOT NULL CHECK (side IN ('BUY', 'SELL')),
    entry_type           VARCHAR(10)  NOT NULL CHECK (entry_type IN ('LIMIT', 'MARKET')),
    proposed_entry_price NUMERIC(38, 18) CHECK (proposed_entry_price > 0),
    proposed_sl_price    NUMERIC(38, 18) NOT NULL CHECK (proposed_sl_price > 0),
    proposed_tp_price    NUMERIC(38, 18) NOT NULL CHECK (proposed_tp_price > 0),
    prediction_event_id  UUID,
    prediction_value     REAL,
    status               VARCHAR(10)  NOT NULL CHECK (status IN ('PROPOSED', 'APPROVED', 'REJECTED')),
    rejection_reason     TEXT,
    risk_check_details   JSONB,
    created_at           TIMESTAMPTZ  NOT NULL DEFAULT NOW(),
    -- "Null if status is not 'REJECTED'", and a rejection always says why.
    CONSTRAINT ck_signals_rejection_reason
        CHECK ((status = 'REJECTED') = (rejection_reason IS NOT NULL))
);
CREATE INDEX idx_signals_created_at ON signals(created_at);
CREATE INDEX idx_signals_trading_pair_status ON signals(trading_pair, status);

CREATE TABLE orders (
    order_pk          SERIAL PRIMARY KEY,
    client_order_id   UUID UNIQUE NOT NULL,
    exchange_order_id VARCHAR(64) UNIQUE,
    signal_id         UUID REFERENCES signals(signal_id),
    trading_pair      VARCHAR(16) NOT NULL,
    exchange          VARCHAR(32) NOT NULL,
    side              VARCHAR(4)  NOT NULL CHECK (side IN ('BUY', 'SELL')),
    order_type        VARCHAR(16) NOT NULL CHECK (order_type IN (
                          'LIMIT', 'MARKET', 'STOP_LOSS', 'TAKE_PROFIT',
                          'STOP_LOSS_LIMIT', 'TAKE_PROFIT_LIMIT', 'TRAILING_STOP',
                          'TRAILING_STOP_LIMIT', 'ICEBERG', 'SETTLE_POSITION')),
    quantity_ordered  NUMERIC(38, 18) NOT NULL CHECK (quantity_ordered > 0),
    limit_price       NUMERIC(38, 18) CHECK (limit_price > 0),
    stop_price        NUMERIC(38, 18) CHECK (stop_price > 0),
    status            VARCHAR(20) NOT NULL CHECK (status IN (
                          'PENDING_NEW', 'NEW', 'PARTIALLY_FILLED', 'FILLED',
                          'PENDING_CANCEL', 'CANCELED', 'REJECTED', 'EXPIRED')),
    error_message     TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    submitted_at      TIMESTAMPTZ,
    last_updated_at   TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_orders_signal_id ON orders(signal_id);
CREATE INDEX idx_orders_exchange_order_id ON orders(exchange_order_id);
CREATE INDEX idx_orders_status ON orders(status);
CREATE INDEX idx_orders_created_at ON orders(created_at);

CREATE TABLE fills (
    fill_pk           SERIAL PRIMARY KEY,
    fill_id           VARCHAR(64),
    order_pk          INTEGER NOT NULL REFERENCES orders(order_pk),
    exchange_order_id VARCHAR(64),
    trading_pair      VARCHAR(16) NOT NULL,
    exchange          VARCHAR(32) NOT NULL,
    side              VARCHAR(4)  NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity_filled   NUMERIC(38, 18) NOT NULL CHECK (quantity_filled > 0),
    fill_price        NUMERIC(38, 18) NOT NULL CHECK (fill_price > 0),
    commission        NUMERIC(38, 18) NOT NULL CHECK (commission >= 0),
    commission_asset  VARCHAR(16) NOT NULL,
    liquidity_type    VARCHAR(10) CHECK (liquidity_type IN ('MAKER', 'TAKER')),
    filled_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_fills_order_pk ON fills(order_pk);
CREATE INDEX idx_fills_exchange_order_id ON fills(exchange_order_id);
CREATE INDEX idx_fills_filled_at ON fills(filled_at);
ALTER TABLE fills ADD CONSTRAINT uq_fills_exchange_fill UNIQUE (exchange, fill_id);

CREATE TABLE trades (
    trade_pk            SERIAL PRIMARY KEY,
    trade_id            UUID UNIQUE NOT NULL,
    signal_id           UUID REFERENCES signals(signal_id),
    trading_pair        VARCHAR(16) NOT NULL,
    exchange            VARCHAR(32) NOT NULL,
    strategy_id         VARCHAR(64) NOT NULL,
    side                VARCHAR(4)  NOT NULL CHECK (side IN ('BUY', 'SELL')),
    entry_order_pk      INTEGER REFERENCES orders(order_pk),
    exit_order_pk       INTEGER REFERENCES orders(order_pk),
    entry_timestamp     TIMESTAMPTZ NOT NULL,
    exit_timestamp      TIMESTAMPTZ NOT NULL,
    quantity            NUMERIC(38, 18) NOT NULL CHECK (quantity > 0),
    average_entry_price NUMERIC(38, 18) NOT NULL CHECK (average_entry_price > 0),
    average_exit_price  NUMERIC(38, 18) NOT NULL CHECK (average_exit_price > 0),
    total_commission    NUMERIC(38, 18) NOT NULL CHECK (total_commission >= 0),
    realized_pnl        NUMERIC(38, 18) NOT NULL,
    realized_pnl_pct    REAL NOT NULL,
    exit_reason         VARCHAR(32) NOT NULL CHECK (exit_reason IN (
                            'TP_HIT', 'SL_HIT', 'TIME_EXIT', 'MANUAL_CLOSE',
                            'TRAILING_STOP', 'SIGNAL_EXIT', 'RISK_LIMIT', 'SHUTDOWN')),
    CONSTRAINT ck_trades_exit_after_entry CHECK (exit_timestamp >= entry_timestamp)
);
CREATE INDEX idx_trades_signal_id ON trades(signal_id);
CREATE INDEX idx_trades_entry_timestamp ON trades(entry_timestamp);
CREATE INDEX idx_trades_exit_timestamp ON trades(exit_timestamp);
CREATE INDEX idx_trades_trading_pair ON trades(trading_pair);

CREATE TABLE system_logs (
    log_pk         BIGSERIAL PRIMARY KEY,
    log_timestamp  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    source_module  VARCHAR(64) NOT NULL,
    log_level      VARCHAR(10) NOT NULL CHECK (log_level IN ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')),
    message        TEXT NOT NULL,
    trading_pair   VARCHAR(16),
    signal_id      UUID,
    order_pk       INTEGER,
    exception_type TEXT,
    stack_trace    TEXT,
    context        JSONB
);
CREATE INDEX idx_system_logs_log_timestamp ON system_logs(log_timestamp);
CREATE INDEX idx_system_logs_log_level ON system_logs(log_level);
CREATE INDEX idx_system_logs_source_module ON system_logs(source_module);

CREATE TABLE portfolio_snapshots (
    snapshot_pk         SERIAL PRIMARY KEY,
    snapshot_timestamp  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    total_equity        NUMERIC(38, 18) NOT NULL,
    available_balance   NUMERIC(38, 18) NOT NULL,
    total_exposure_pct  REAL NOT NULL,
    daily_drawdown_pct  REAL NOT NULL,
    weekly_drawdown_pct REAL NOT NULL,
    total_drawdown_pct  REAL NOT NULL,
    positions           JSONB NOT NULL
);
CREATE UNIQUE INDEX idx_portfolio_snapshots_timestamp ON portfolio_snapshots(snapshot_timestamp);

CREATE TABLE configurations (
    config_pk      SERIAL PRIMARY KEY,
    config_hash    VARCHAR(64) UNIQUE NOT NULL CHECK (config_hash ~ '^[0-9a-f]{64}$'),
    config_content JSONB NOT NULL,
    loaded_at      TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    is_active      BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE INDEX idx_configurations_loaded_at ON configurations(loaded_at);
-- At most one active configuration.
CREATE UNIQUE INDEX uq_configurations_one_active ON configurations (is_active) WHERE is_active;
