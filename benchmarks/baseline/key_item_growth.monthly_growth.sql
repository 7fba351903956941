-- Watch-listed items per institution and month: flag month m when m-1 is not before the
-- first month of the data, m >= 1.5 x (m-1) and the increase is >= 10,000 yuan; the
-- amount is the increase, at most the month's own billing (after a month of refunds).
-- An entry matches by code, by code prefix ('*'), or by generic name (catalog generic_name
-- equal, or the billed item_name containing it).
WITH settlements AS (  -- effective settlements: reversal rows and what they reverse removed
    SELECT *
    FROM read_parquet('DATA/settlements.parquet')
    WHERE reversed_settlement_id IS NULL
      AND settlement_id NOT IN (SELECT reversed_settlement_id
                                FROM read_parquet('DATA/settlements.parquet')
                                WHERE reversed_settlement_id IS NOT NULL)
),
fee_lines AS (
    SELECT f.item_code, f.item_name, f.charge_time, f.amount, s.institution_id
    FROM read_parquet('DATA/fee_lines.parquet') AS f
    JOIN settlements AS s USING (settlement_id)
),
billed_items AS (
    SELECT DISTINCT item_code, item_name FROM fee_lines
),
watched AS (
    SELECT DISTINCT b.item_code, b.item_name
    FROM billed_items AS b
    LEFT JOIN read_parquet('DATA/catalog.parquet') AS c ON c.item_code = b.item_code
    JOIN watchlist AS w
      ON b.item_code = w.item_code
      OR (ends_with(w.item_code, '*') AND starts_with(b.item_code, rtrim(w.item_code, '*')))
      OR c.generic_name = w.generic_name
      OR contains(b.item_name, w.generic_name)
),
monthly AS (
    SELECT f.institution_id, f.item_code,
           CAST(date_trunc('month', f.charge_time) AS DATE) AS month, sum(f.amount) AS amount
    FROM fee_lines AS f
    JOIN watched AS w ON w.item_code = f.item_code AND w.item_name = f.item_name
    GROUP BY f.institution_id, f.item_code, month
),
first_month AS (
    SELECT CAST(date_trunc('month', min(charge_time)) AS DATE) AS month FROM fee_lines
)
SELECT m.institution_id, m.item_code, m.month AS period_start,
       least(m.amount - coalesce(p.amount, 0), m.amount) AS amount_at_risk
FROM monthly AS m
LEFT JOIN monthly AS p
  ON p.institution_id = m.institution_id AND p.item_code = m.item_code
 AND p.month = m.month - INTERVAL 1 MONTH
WHERE m.month - INTERVAL 1 MONTH >= (SELECT month FROM first_month)
  AND m.amount >= 1.5 * coalesce(p.amount, 0)
  AND m.amount - coalesce(p.amount, 0) >= 10000
