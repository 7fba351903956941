-- Two settlements of one person (any medical type) in different pooling areas (first 4
-- digits of visit_region) less than 3 hours apart: the later one is flagged (equal times:
-- the larger settlement id); at risk: its fund amount, at most its total.
WITH settlements AS (  -- effective settlements: reversal rows and what they reverse removed
    SELECT *
    FROM read_parquet('DATA/settlements.parquet')
    WHERE reversed_settlement_id IS NULL
      AND settlement_id NOT IN (SELECT reversed_settlement_id
                                FROM read_parquet('DATA/settlements.parquet')
                                WHERE reversed_settlement_id IS NOT NULL)
)
SELECT later.settlement_id, any_value(least(later.fund_amount, later.total_amount)) AS amount_at_risk
FROM settlements AS later
JOIN settlements AS earlier ON earlier.person_id = later.person_id
WHERE substr(earlier.visit_region, 1, 4) <> substr(later.visit_region, 1, 4)
  AND (earlier.admit_time < later.admit_time
       OR (earlier.admit_time = later.admit_time AND earlier.settlement_id < later.settlement_id))
  AND later.admit_time - earlier.admit_time < INTERVAL 3 HOUR
GROUP BY later.settlement_id
