#!/usr/bin/env python3
"""The peer for benches/e2e.py: DuckDB doing the same usage rating and wallet debit in SQL
over the same generated Parquet files, with the same thread count.

It reads the same inputs, rates every usage row of an ACTIVE/DISCONNECTED INTERNAL
subscription inside its item's window (quantity summed per item, times custom_price ?? price,
over unit_size, rounded half-up to 2 decimals), applies credits, debits the wallets, and writes
the transactions and the closing wallets as zstd Parquet. It does less than billrun (no
pre-rate proration, no all-or-nothing, no rejects, no lists, no estimates), so it is a lower
bound for a SQL engine doing the whole job.

usage: duckdb_peer.py DATA_DIR THREADS OUT_DIR
"""
import os
import sys
import time

import duckdb

data, threads, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.makedirs(out, exist_ok=True)
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
con.execute("SET preserve_insertion_order = false")
p = lambda name: os.path.join(data, name)
t = time.time()
con.execute(f"""
CREATE TEMP TABLE debits AS
WITH items AS (
  SELECT i.subscription_id, i.item_no, i.service_id,
         CAST(coalesce(i.custom_price, s.price) AS DECIMAL(38, 6)) AS price,
         CAST(coalesce(s.unit_size, 1) AS DECIMAL(38, 6)) AS unit_size,
         coalesce(i.billed_through, i.start_date) AS wfrom,
         least(DATE '2026-11-22', coalesce(i.end_date, DATE '9999-12-31')) AS wto
  FROM read_parquet('{p("state/subscription_items.parquet")}') i
  JOIN read_parquet('{p("state/services.parquet")}') s USING (service_id)
  WHERE s.billing_method = 'POST_RATE'
), subs AS (
  SELECT subscription_id, account_id FROM read_parquet('{p("state/subscriptions.parquet")}')
  WHERE source = 'INTERNAL' AND status IN ('ACTIVE', 'DISCONNECTED')
), u AS (
  SELECT subscription_id, service_id, event_time, CAST(quantity AS DECIMAL(38, 6)) AS quantity
  FROM read_parquet('{p("usage.parquet")}')
  WHERE quantity >= 0
)
SELECT s.account_id, it.subscription_id, it.item_no, it.service_id,
       sum(u.quantity) AS quantity, it.price,
       round(sum(u.quantity) * it.price / it.unit_size, 2) AS amount
FROM u
JOIN items it ON it.subscription_id = u.subscription_id AND it.service_id = u.service_id
JOIN subs s ON s.subscription_id = u.subscription_id
WHERE u.event_time >= it.wfrom AND u.event_time < it.wto
GROUP BY s.account_id, it.subscription_id, it.item_no, it.service_id, it.price, it.unit_size
""")
con.execute(f"""
COPY (SELECT * FROM debits ORDER BY account_id, subscription_id, item_no)
TO '{os.path.join(out, "transactions.parquet")}' (FORMAT parquet, COMPRESSION zstd)
""")
con.execute(f"""
COPY (
  WITH c AS (SELECT wallet_id, sum(CAST(amount AS DECIMAL(38, 6))) AS credits FROM read_parquet('{p("credits.parquet")}') GROUP BY 1),
       d AS (SELECT account_id, sum(amount) AS debits FROM debits GROUP BY 1)
  SELECT w.wallet_id, w.account_id, w.currency,
         CAST(w.balance AS DECIMAL(38, 6)) + coalesce(c.credits, 0) - coalesce(d.debits, 0) AS balance, w.updated_at
  FROM read_parquet('{p("state/wallets.parquet")}') w
  LEFT JOIN c USING (wallet_id) LEFT JOIN d USING (account_id)
  ORDER BY w.wallet_id
) TO '{os.path.join(out, "wallets.parquet")}' (FORMAT parquet, COMPRESSION zstd)
""")
print(f'{{"seconds": {time.time() - t:.3f}}}')
