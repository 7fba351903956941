-- Per institution and drug/consumable (08-11): quantity billed in the analysis window above
-- the quantity purchased from 30 days before the window to its end, by more than 10 %.
-- Institutions with no purchase rows at all are not judged.
WITH settlements AS (  -- effective settlements: reversal rows and what they reverse removed
    SELECT *
    FROM read_parquet('DATA/settlements.parquet')
    WHERE reversed_settlement_id IS NULL
      AND settlement_id NOT IN (SELECT reversed_settlement_id
                                FROM read_parquet('DATA/settlements.parquet')
                                WHERE reversed_settlement_id IS NOT NULL)
),
fee_lines AS (
    SELECT f.item_code, f.fee_category, f.charge_time, f.quantity, f.amount, s.institution_id
    FROM read_parquet('DATA/fee_lines.parquet') AS f
    JOIN settlements AS s USING (settlement_id)
),
analysis_window AS (
    SELECT min(CAST(charge_time AS DATE)) AS window_start,
           max(CAST(charge_time AS DATE)) AS window_end
    FROM fee_lines
),
billed AS (
    SELECT institution_id, item_code, sum(quantity) AS billed_quantity,
           sum(amount) AS billed_amount
    FROM fee_lines
    WHERE fee_category IN ('08', '09', '10', '11')
    GROUP BY institution_id, item_code
),
bought AS (
    SELECT p.institution_id, p.item_code, sum(p.quantity) AS purchased
    FROM read_parquet('DATA/purchases.parquet') AS p, analysis_window AS w
    WHERE p.purchase_date BETWEEN w.window_start - INTERVAL 30 DAY AND w.window_end
    GROUP BY p.institution_id, p.item_code
)
SELECT b.institution_id, b.item_code,
       w.window_start AS period_start, w.window_end AS period_end,
       least((b.billed_quantity - coalesce(p.purchased, 0)) * b.billed_amount
                 / b.billed_quantity,
             b.billed_amount) AS amount_at_risk
FROM billed AS b
CROSS JOIN analysis_window AS w
LEFT JOIN bought AS p USING (institution_id, item_code)
WHERE b.institution_id IN (SELECT institution_id FROM read_parquet('DATA/purchases.parquet'))
  AND b.billed_quantity > coalesce(p.purchased, 0) * 1.10
