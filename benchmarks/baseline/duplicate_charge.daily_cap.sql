-- Quantity of an item on one calendar day of one settlement above the catalog's
-- max_daily_quantity; at risk: excess x that day's average billed unit price.
WITH settlements AS (  -- effective settlements: reversal rows and what they reverse removed
    SELECT *
    FROM read_parquet('DATA/settlements.parquet')
    WHERE reversed_settlement_id IS NULL
      AND settlement_id NOT IN (SELECT reversed_settlement_id
                                FROM read_parquet('DATA/settlements.parquet')
                                WHERE reversed_settlement_id IS NOT NULL)
)
SELECT f.settlement_id, f.item_code, CAST(f.charge_time AS DATE) AS charge_date,
       least((sum(f.quantity) - c.max_daily_quantity) * sum(f.amount) / sum(f.quantity),
             sum(f.amount)) AS amount_at_risk
FROM read_parquet('DATA/fee_lines.parquet') AS f
JOIN read_parquet('DATA/catalog.parquet') AS c ON c.item_code = f.item_code
WHERE c.max_daily_quantity IS NOT NULL
  AND f.settlement_id IN (SELECT settlement_id FROM settlements)
GROUP BY f.settlement_id, f.item_code, charge_date, c.max_daily_quantity
HAVING sum(f.quantity) > c.max_daily_quantity
