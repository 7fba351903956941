-- Lines whose unit price is more than 1 % above the catalog's price cap;
-- at risk: (unit_price - price_cap) x quantity, never more than the line's amount.
WITH settlements AS (  -- effective settlements: reversal rows and what they reverse removed
    SELECT *
    FROM read_parquet('DATA/settlements.parquet')
    WHERE reversed_settlement_id IS NULL
      AND settlement_id NOT IN (SELECT reversed_settlement_id
                                FROM read_parquet('DATA/settlements.parquet')
                                WHERE reversed_settlement_id IS NOT NULL)
)
SELECT f.line_id,
       least((f.unit_price - c.price_cap) * f.quantity, f.amount) AS amount_at_risk
FROM read_parquet('DATA/fee_lines.parquet') AS f
JOIN read_parquet('DATA/catalog.parquet') AS c ON c.item_code = f.item_code
WHERE c.price_cap IS NOT NULL
  AND f.unit_price > c.price_cap * 1.01
  AND f.settlement_id IN (SELECT settlement_id FROM settlements)
