-- At one pharmacy, >= 5 distinct off-site persons' purchases (41) within 10 minutes
-- (last - first <= 10 min). Members of qualifying windows less than 10 minutes apart are
-- one burst, and so are two exactly 10 minutes apart when the window opening at the
-- first of them qualifies; keyed by its first settlement; at risk: the burst's fund
-- amount (each settlement's at most its total).
WITH settlements AS (  -- effective settlements: reversal rows and what they reverse removed
    SELECT *
    FROM read_parquet('DATA/settlements.parquet')
    WHERE reversed_settlement_id IS NULL
      AND settlement_id NOT IN (SELECT reversed_settlement_id
                                FROM read_parquet('DATA/settlements.parquet')
                                WHERE reversed_settlement_id IS NOT NULL)
),
offsite AS (
    SELECT settlement_id, institution_id, person_id, admit_time,
           least(fund_amount, total_amount) AS fund_amount
    FROM settlements
    WHERE medical_type = '41' AND substr(insured_region, 1, 4) <> substr(visit_region, 1, 4)
),
windows AS (  -- distinct cards in the 10 minutes starting at each purchase
    SELECT *,
           count(DISTINCT person_id) OVER (
               PARTITION BY institution_id ORDER BY admit_time
               RANGE BETWEEN CURRENT ROW AND INTERVAL 10 MINUTE FOLLOWING) AS cards
    FROM offsite
),
members AS (  -- purchases inside at least one window of >= 5 cards
    SELECT *
    FROM (SELECT *,
                 max(CASE WHEN cards >= 5 THEN admit_time END) OVER (
                     PARTITION BY institution_id ORDER BY admit_time
                     RANGE BETWEEN INTERVAL 10 MINUTE PRECEDING AND CURRENT ROW) AS burst_start
          FROM windows)
    WHERE burst_start IS NOT NULL
),
bursts AS (
    SELECT *, sum(CASE WHEN gap < INTERVAL 10 MINUTE
                            OR (gap = INTERVAL 10 MINUTE AND previous_cards >= 5)
                       THEN 0 ELSE 1 END) OVER (
                  PARTITION BY institution_id ORDER BY admit_time, settlement_id) AS burst
    FROM (SELECT *, admit_time - lag(admit_time) OVER w AS gap, lag(cards) OVER w AS previous_cards
          FROM members
          WINDOW w AS (PARTITION BY institution_id ORDER BY admit_time, settlement_id))
)
SELECT institution_id, first(settlement_id ORDER BY admit_time, settlement_id) AS settlement_id,
       sum(fund_amount) AS amount_at_risk
FROM bursts
GROUP BY institution_id, burst
