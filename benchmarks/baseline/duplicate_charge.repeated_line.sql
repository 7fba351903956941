-- Two or more lines of one settlement with the same item, charge time, quantity and unit
-- price; at risk: every copy beyond the first (smallest line_id).
WITH settlements AS (  -- effective settlements: reversal rows and what they reverse removed
    SELECT *
    FROM read_parquet('DATA/settlements.parquet')
    WHERE reversed_settlement_id IS NULL
      AND settlement_id NOT IN (SELECT reversed_settlement_id
                                FROM read_parquet('DATA/settlements.parquet')
                                WHERE reversed_settlement_id IS NOT NULL)
)
SELECT settlement_id, item_code, charge_time, quantity, unit_price,
       sum(amount) - arg_min(amount, line_id) AS amount_at_risk
FROM read_parquet('DATA/fee_lines.parquet')
WHERE settlement_id IN (SELECT settlement_id FROM settlements)
GROUP BY settlement_id, item_code, charge_time, quantity, unit_price
HAVING count(*) >= 2
