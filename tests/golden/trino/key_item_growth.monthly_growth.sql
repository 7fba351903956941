WITH src AS (
  SELECT
    *
  FROM (
    SELECT
      s.*
    FROM "watched_fee_lines" AS s
  ) AS j
), per AS (
  SELECT
    "institution_id",
    "item_code",
    CAST(DATE_TRUNC('MONTH', "charge_date") AS DATE) AS period_start,
    SUM(amount) AS value,
    MIN(item_name) AS "item_name"
  FROM src
  GROUP BY
    "institution_id",
    "item_code",
    CAST(DATE_TRUNC('MONTH', "charge_date") AS DATE)
), pc AS (
  SELECT
    c.*,
    COALESCE(p.value, 0) AS previous_value,
    c.value - COALESCE(p.value, 0) AS increase,
    CAST(c.period_start - INTERVAL '1' MONTH AS DATE) AS previous_start,
    CAST(c.period_start + INTERVAL '1' MONTH - INTERVAL '1' DAY AS DATE) AS period_end
  FROM per AS c
  LEFT JOIN per AS p
    ON c."institution_id" = p."institution_id"
    AND c."item_code" = p."item_code"
    AND p.period_start = CAST(c.period_start - INTERVAL '1' MONTH AS DATE)
), hits AS (
  SELECT
    *
  FROM pc
  WHERE
    previous_start >= CAST('2000-01-01' AS DATE)
    AND (
      value >= previous_value * CAST('1.5' AS DECIMAL(19, 1))
      AND increase >= CAST('10000' AS DECIMAL(18, 0))
    )
)
SELECT
  CAST(NULL AS VARCHAR) AS "settlement_id",
  CAST(NULL AS VARCHAR) AS "person_id",
  CAST("institution_id" AS VARCHAR) AS "institution_id",
  CAST("item_code" AS VARCHAR) AS "item_code",
  CAST("period_start" AS DATE) AS "period_start",
  CAST("period_end" AS DATE) AS "period_end",
  COALESCE(CAST(ARRAY[] AS ARRAY(VARCHAR)), CAST(ARRAY[] AS ARRAY(VARCHAR))) AS related_settlement_ids,
  CAST(ROUND(GREATEST(CAST(LEAST(increase, value) AS DECIMAL(38, 10)), 0), 2) AS DECIMAL(16, 2)) AS amount_at_risk,
  value AS "ev__month_amount",
  previous_value AS "ev__previous_amount",
  increase AS "ev__increase",
  item_name AS "ev__item_name",
  CASE
    WHEN COALESCE(item_name, '') = ''
    THEN item_code
    ELSE CONCAT(
      CAST(item_code AS VARCHAR),
      CAST('（' AS VARCHAR),
      CAST(item_name AS VARCHAR),
      CAST('）' AS VARCHAR)
    )
  END AS "ev__item_zh",
  CONCAT(
    CAST(YEAR(period_start) AS VARCHAR),
    CAST('年' AS VARCHAR),
    CAST(MONTH(period_start) AS VARCHAR),
    CAST('月' AS VARCHAR)
  ) AS "ev__month_zh"
FROM hits
