-- Bed-fee (01) quantity of a stay above its bed days (admit day counts, discharge day does
-- not, a same-day stay is 1); at risk: excess x top bed price, capped at the bed fees billed.
WITH settlements AS (  -- effective settlements: reversal rows and what they reverse removed
    SELECT *
    FROM read_parquet('DATA/settlements.parquet')
    WHERE reversed_settlement_id IS NULL
      AND settlement_id NOT IN (SELECT reversed_settlement_id
                                FROM read_parquet('DATA/settlements.parquet')
                                WHERE reversed_settlement_id IS NOT NULL)
),
stays AS (
    SELECT settlement_id,
           greatest(date_diff('day', CAST(admit_time AS DATE), CAST(discharge_time AS DATE)), 1)
               AS bed_days
    FROM settlements
    WHERE medical_type = '21' AND discharge_time IS NOT NULL
),
beds AS (
    SELECT settlement_id, sum(quantity) AS billed_days, max(unit_price) AS top_price,
           sum(amount) AS bed_amount
    FROM read_parquet('DATA/fee_lines.parquet')
    WHERE fee_category = '01'
    GROUP BY settlement_id
)
SELECT settlement_id,
       least((billed_days - bed_days) * top_price, bed_amount) AS amount_at_risk
FROM beds JOIN stays USING (settlement_id)
WHERE billed_days > bed_days
