-- One person buys the same item in >= 4 pharmacy settlements (41) within 30 calendar days
-- (last date - first date <= 29). Purchases no more than 29 days apart form one run, keyed
-- by its last purchase; at risk: the amount of every purchase beyond the first.
WITH settlements AS (  -- effective settlements: reversal rows and what they reverse removed
    SELECT *
    FROM read_parquet('DATA/settlements.parquet')
    WHERE reversed_settlement_id IS NULL
      AND settlement_id NOT IN (SELECT reversed_settlement_id
                                FROM read_parquet('DATA/settlements.parquet')
                                WHERE reversed_settlement_id IS NOT NULL)
),
purchases AS (  -- two lines of one item in one settlement are one purchase
    SELECT s.person_id, f.item_code, f.settlement_id, any_value(s.admit_time) AS admit_time,
           sum(f.amount) AS amount
    FROM read_parquet('DATA/fee_lines.parquet') AS f
    JOIN settlements AS s ON s.settlement_id = f.settlement_id
    WHERE s.medical_type = '41'
    GROUP BY s.person_id, f.item_code, f.settlement_id
),
windows AS (  -- purchases in the 30 days starting at each purchase
    SELECT *,
           count(*) OVER (
               PARTITION BY person_id, item_code ORDER BY CAST(admit_time AS DATE)
               RANGE BETWEEN CURRENT ROW AND INTERVAL 29 DAY FOLLOWING) AS n
    FROM purchases
),
members AS (  -- purchases inside at least one window of >= 4 purchases
    SELECT *
    FROM (SELECT *,
                 max(CASE WHEN n >= 4 THEN CAST(admit_time AS DATE) END) OVER (
                     PARTITION BY person_id, item_code ORDER BY CAST(admit_time AS DATE)
                     RANGE BETWEEN INTERVAL 29 DAY PRECEDING AND CURRENT ROW) AS run_start
          FROM windows)
    WHERE run_start IS NOT NULL
),
runs AS (
    SELECT *, sum(CASE WHEN gap <= 29 THEN 0 ELSE 1 END) OVER (
                  PARTITION BY person_id, item_code ORDER BY admit_time, settlement_id) AS run
    FROM (SELECT *, date_diff('day', lag(CAST(admit_time AS DATE)) OVER (
                        PARTITION BY person_id, item_code ORDER BY admit_time, settlement_id),
                        CAST(admit_time AS DATE)) AS gap
          FROM members)
)
SELECT person_id, item_code,
       last(settlement_id ORDER BY admit_time, settlement_id) AS settlement_id,
       sum(amount) - first(amount ORDER BY admit_time, settlement_id) AS amount_at_risk
FROM runs
GROUP BY person_id, item_code, run
