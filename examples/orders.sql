-- examples/orders.sql: the orders domain as an ocx module.
--
--   OrderPlaced -> reserve inventory -> charge payment -> confirm
--
-- A saga drives each order.  When the payment fails, the saga compensates in
-- reverse order: the inventory is released, then the order is cancelled.
--
-- Module contents (schema "orders"):
--   module "orders" event types with contracts: OrderPlaced, OrderRejected,
--                   InventoryReserved, InventoryRejected, InventoryReleased,
--                   PaymentCharged, PaymentFailed, OrderConfirmed, OrderCancelled
--   plain tables    orders.stock (the inventory), orders.wallets (what each
--                   customer can pay); handlers change them under row locks
--   commands        orders.PlaceOrder, orders.ReserveInventory,
--                   orders.ReleaseInventory, orders.ChargePayment,
--                   orders.ConfirmOrder, orders.CancelOrder (plpgsql handlers
--                   run by the ocx worker)
--   projection      orders.order_view, the read model of every order
--   saga            order_fulfillment
--   entry point     orders.place_order(order_id, customer, sku, qty, amount)
--
-- Load it into a database with ocx (and the worker running):
--   psql -f examples/orders.sql
\set ON_ERROR_STOP 1

CREATE SCHEMA orders;

CREATE TABLE orders.stock (
    sku         text PRIMARY KEY,
    on_hand     integer NOT NULL CHECK (on_hand >= 0),
    reserved    integer NOT NULL DEFAULT 0 CHECK (reserved >= 0)
);
CREATE TABLE orders.wallets (
    customer    text PRIMARY KEY,
    balance     numeric NOT NULL CHECK (balance >= 0)
);
CREATE TABLE orders.order_view (
    order_id    text PRIMARY KEY,
    customer    text,
    sku         text,
    qty         integer,
    amount      numeric,
    status      text NOT NULL,
    history     text[] NOT NULL DEFAULT '{}',
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The module: event contracts (every order event carries its order id).
SELECT ocx.define_module('orders', $json${
  "description": "orders: placing, stock, payment",
  "event_types": [
    {"type": "OrderPlaced", "schema_version": 1,
     "schema": {"type": "object", "required": ["order_id", "customer", "sku", "qty", "amount"],
                "properties": {"order_id": {"type": "string"}, "qty": {"type": "integer", "minimum": 1},
                               "amount": {"type": "number", "minimum": 0}}}},
    {"type": "OrderRejected", "schema_version": 1, "schema": {"type": "object", "required": ["order_id"]}},
    {"type": "InventoryReserved", "schema_version": 1, "schema": {"type": "object", "required": ["order_id", "sku", "qty"]}},
    {"type": "InventoryRejected", "schema_version": 1, "schema": {"type": "object", "required": ["order_id", "sku"]}},
    {"type": "InventoryReleased", "schema_version": 1, "schema": {"type": "object", "required": ["order_id", "sku", "qty"]}},
    {"type": "PaymentCharged", "schema_version": 1, "schema": {"type": "object", "required": ["order_id", "amount"]}},
    {"type": "PaymentFailed", "schema_version": 1, "schema": {"type": "object", "required": ["order_id", "reason"]}},
    {"type": "OrderConfirmed", "schema_version": 1, "schema": {"type": "object", "required": ["order_id"]}},
    {"type": "OrderCancelled", "schema_version": 1, "schema": {"type": "object", "required": ["order_id"]}}
  ]}$json$);

-- ---------------------------------------------------------------- handlers

-- PlaceOrder: the order's first event; a nonsensical order is rejected.
CREATE FUNCTION orders.place(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF (c.data->>'qty')::int < 1 OR (c.data->>'amount')::numeric < 0 THEN
        PERFORM ocx.append_event('order-' || (c.data->>'order_id'), 0, 'OrderRejected', c.data);
    ELSE
        PERFORM ocx.append_event('order-' || (c.data->>'order_id'), 0, 'OrderPlaced', c.data);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION orders.reserve(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    s orders.stock;
BEGIN
    SELECT * INTO s FROM orders.stock WHERE sku = c.data->>'sku' FOR UPDATE;
    IF NOT FOUND OR s.on_hand - s.reserved < (c.data->>'qty')::int THEN
        PERFORM ocx.append_event('order-' || (c.data->>'order_id'), NULL, 'InventoryRejected',
            c.data || jsonb_build_object('available', coalesce(s.on_hand - s.reserved, 0)));
        RETURN NULL;
    END IF;
    UPDATE orders.stock SET reserved = reserved + (c.data->>'qty')::int WHERE sku = s.sku;
    PERFORM ocx.append_event('order-' || (c.data->>'order_id'), NULL, 'InventoryReserved', c.data);
    RETURN NULL;
END $$;

CREATE FUNCTION orders.release(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    UPDATE orders.stock SET reserved = reserved - (c.data->>'qty')::int WHERE sku = c.data->>'sku';
    PERFORM ocx.append_event('order-' || (c.data->>'order_id'), NULL, 'InventoryReleased', c.data);
    RETURN NULL;
END $$;

CREATE FUNCTION orders.charge(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    w orders.wallets;
BEGIN
    SELECT * INTO w FROM orders.wallets WHERE customer = c.data->>'customer' FOR UPDATE;
    IF NOT FOUND OR w.balance < (c.data->>'amount')::numeric THEN
        PERFORM ocx.append_event('order-' || (c.data->>'order_id'), NULL, 'PaymentFailed',
            c.data || jsonb_build_object('reason', 'insufficient funds', 'balance', coalesce(w.balance, 0)));
        RETURN NULL;
    END IF;
    UPDATE orders.wallets SET balance = balance - (c.data->>'amount')::numeric WHERE customer = w.customer;
    PERFORM ocx.append_event('order-' || (c.data->>'order_id'), NULL, 'PaymentCharged', c.data);
    RETURN NULL;
END $$;

CREATE FUNCTION orders.confirm(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    -- the reserved units leave the warehouse
    UPDATE orders.stock SET reserved = reserved - (c.data->>'qty')::int,
                            on_hand = on_hand - (c.data->>'qty')::int
     WHERE sku = c.data->>'sku';
    PERFORM ocx.append_event('order-' || (c.data->>'order_id'), NULL, 'OrderConfirmed', c.data);
    RETURN NULL;
END $$;

CREATE FUNCTION orders.cancel(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ocx.append_event('order-' || (c.data->>'order_id'), NULL, 'OrderCancelled', c.data);
    RETURN NULL;
END $$;

SELECT ocx.define_command_handler('orders.PlaceOrder', 'orders.place(ocx.command)');
SELECT ocx.define_command_handler('orders.ReserveInventory', 'orders.reserve(ocx.command)');
SELECT ocx.define_command_handler('orders.ReleaseInventory', 'orders.release(ocx.command)');
SELECT ocx.define_command_handler('orders.ChargePayment', 'orders.charge(ocx.command)');
SELECT ocx.define_command_handler('orders.ConfirmOrder', 'orders.confirm(ocx.command)');
SELECT ocx.define_command_handler('orders.CancelOrder', 'orders.cancel(ocx.command)');

-- -------------------------------------------------------------- projection

CREATE FUNCTION orders.project(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    status text := CASE e.type
        WHEN 'OrderPlaced' THEN 'placed'
        WHEN 'OrderRejected' THEN 'rejected'
        WHEN 'InventoryReserved' THEN 'reserved'
        WHEN 'InventoryRejected' THEN 'out of stock'
        WHEN 'PaymentCharged' THEN 'paid'
        WHEN 'PaymentFailed' THEN 'payment failed'
        WHEN 'InventoryReleased' THEN 'released'
        WHEN 'OrderConfirmed' THEN 'confirmed'
        WHEN 'OrderCancelled' THEN 'cancelled' END;
BEGIN
    IF status IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO orders.order_view AS v (order_id, customer, sku, qty, amount, status, history, updated_at)
        VALUES (e.data->>'order_id', e.data->>'customer', e.data->>'sku', (e.data->>'qty')::int,
                (e.data->>'amount')::numeric, status, ARRAY[e.type], e.time)
        ON CONFLICT (order_id) DO UPDATE
           SET status = excluded.status, history = v.history || e.type, updated_at = e.time;
END $$;

SELECT ocx.define_projection('orders.order_view', 'orders.project(ocx.event)', categories => '{order}');

-- -------------------------------------------------------------------- saga

SELECT ocx.define_saga('order_fulfillment', $json${
  "description": "place an order, reserve its stock, charge the customer, confirm",
  "steps": [
    {"name": "place", "command": "orders.PlaceOrder",
     "success": "OrderPlaced", "failure": "OrderRejected",
     "compensation": {"command": "orders.CancelOrder"}},
    {"name": "reserve", "command": "orders.ReserveInventory",
     "success": "InventoryReserved", "failure": "InventoryRejected", "timeout": "1 minute",
     "compensation": {"command": "orders.ReleaseInventory"}},
    {"name": "charge", "command": "orders.ChargePayment",
     "data": {"order_id": "$.input.order_id", "customer": "$.input.customer", "amount": "$.input.amount",
              "sku": "$.steps.reserve.sku", "qty": "$.steps.reserve.qty"},
     "success": "PaymentCharged", "failure": "PaymentFailed", "timeout": "1 minute"},
    {"name": "confirm", "command": "orders.ConfirmOrder", "success": "OrderConfirmed"}
  ]}$json$);

-- The entry point: one saga per order, its id derived from the order id so
-- that placing the same order twice is a no-op.
CREATE FUNCTION orders.place_order(order_id text, customer text, sku text, qty integer, amount numeric)
    RETURNS uuid LANGUAGE sql AS $$
    SELECT ocx.start_saga('order_fulfillment',
        jsonb_build_object('order_id', order_id, 'customer', customer, 'sku', sku, 'qty', qty, 'amount', amount),
        md5('order/' || order_id)::uuid) $$;
