-- The bot's own client order ids (``gf-1a2b3c4d-1719999999999999``, ``gf-sl-...``)
-- are strings, not UUIDs. orders.client_order_ref keeps the string exactly; the
-- seed's UUID column holds uuid5 of it, so every lookup works by either.
ALTER TABLE orders ADD COLUMN client_order_ref VARCHAR(64);
CREATE UNIQUE INDEX uq_orders_client_order_ref ON orders(client_order_ref);
