WITH src AS (
  SELECT
    *
  FROM (
    SELECT
      s.*
    FROM "settlements" AS s
  ) AS j
  WHERE
    medical_type = '21'
), seq AS (
  SELECT
    src.*,
    LAG(TRUE) OVER (PARTITION BY "person_id", "institution_id" ORDER BY "admit_time", "settlement_id") AS __has_prev,
    LAG("diagnosis_category") OVER (PARTITION BY "person_id", "institution_id" ORDER BY "admit_time", "settlement_id") AS "prev__diagnosis_category",
    LAG("discharge_date") OVER (PARTITION BY "person_id", "institution_id" ORDER BY "admit_time", "settlement_id") AS "prev__discharge_date",
    LAG("settlement_id") OVER (PARTITION BY "person_id", "institution_id" ORDER BY "admit_time", "settlement_id") AS "prev__settlement_id"
  FROM src
), hits AS (
  SELECT
    *,
    ARRAY[prev__settlement_id] AS related_settlement_ids
  FROM seq
  WHERE
    __has_prev
    AND (
      (
        CAST(admit_date AS DATE) - CAST("prev__discharge_date" AS DATE)
      ) BETWEEN 0 AND 15
      AND diagnosis_category = "prev__diagnosis_category"
      AND NOT diagnosis_category IN ('Z51', 'Z49', 'O80', 'O81', 'O82', 'O83', 'O84')
      AND NOT "prev__diagnosis_category" IN ('Z51', 'Z49', 'O80', 'O81', 'O82', 'O83', 'O84')
    )
)
SELECT
  CAST("settlement_id" AS TEXT) AS "settlement_id",
  CAST("person_id" AS TEXT) AS "person_id",
  CAST("institution_id" AS TEXT) AS "institution_id",
  CAST(NULL AS TEXT) AS "item_code",
  CAST(NULL AS DATE) AS "period_start",
  CAST(NULL AS DATE) AS "period_end",
  COALESCE(CAST("related_settlement_ids" AS TEXT[]), CAST(ARRAY[] AS TEXT[])) AS related_settlement_ids,
  CAST(ROUND(GREATEST(CAST(LEAST(fund_amount, total_amount) AS DECIMAL(38, 10)), 0), 2) AS DECIMAL(16, 2)) AS amount_at_risk,
  (
    CAST(admit_date AS DATE) - CAST("prev__discharge_date" AS DATE)
  ) AS "ev__gap_days",
  CASE (
      (
        CAST(admit_date AS DATE) - CAST("prev__discharge_date" AS DATE)
      )
    )
    WHEN 0
    THEN '当天'
    ELSE CAST((
      (
        CAST(admit_date AS DATE) - CAST("prev__discharge_date" AS DATE)
      )
    ) AS TEXT) || '天后'
  END AS "ev__gap_zh",
  diagnosis_category AS "ev__diagnosis_category",
  "prev__settlement_id" AS "ev__earlier_settlement_id",
  "prev__discharge_date" AS "ev__earlier_discharge_date",
  admit_date AS "ev__admit_date",
  fund_amount AS "ev__fund_amount",
  total_amount AS "ev__total_amount"
FROM hits
