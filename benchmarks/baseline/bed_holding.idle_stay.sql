-- Stays of LOS >= 3 with >= 3 idle days and idle days >= 50 % of LOS; an idle day (admit
-- date inclusive, discharge date exclusive) has only 01/02/07 lines or none at all.
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
           CAST(admit_time AS DATE) AS admit_date,
           CAST(discharge_time AS DATE) AS discharge_date,
           date_diff('day', CAST(admit_time AS DATE), CAST(discharge_time AS DATE)) AS los
    FROM settlements
    WHERE medical_type = '21' AND discharge_time IS NOT NULL
      AND date_diff('day', CAST(admit_time AS DATE), CAST(discharge_time AS DATE)) >= 3
),
stay_days AS (
    SELECT settlement_id, los,
           CAST(unnest(range(admit_date, discharge_date, INTERVAL 1 DAY)) AS DATE) AS day
    FROM stays
),
daily AS (
    SELECT settlement_id, CAST(charge_time AS DATE) AS day, sum(amount) AS amount,
           bool_and(fee_category IN ('01', '02', '07')) AS basic_only
    FROM read_parquet('DATA/fee_lines.parquet')
    WHERE settlement_id IN (SELECT settlement_id FROM stays)
    GROUP BY settlement_id, day
)
SELECT d.settlement_id, coalesce(sum(f.amount), 0) AS amount_at_risk
FROM stay_days AS d
LEFT JOIN daily AS f ON f.settlement_id = d.settlement_id AND f.day = d.day
WHERE coalesce(f.basic_only, TRUE)
GROUP BY d.settlement_id, d.los
HAVING count(*) >= 3 AND count(*) >= 0.5 * d.los
