WITH src AS (
  SELECT
    *
  FROM (
    SELECT
      s.*
    FROM "fee_line_rows" AS s
  ) AS j
), cand AS (
  SELECT
    HASH("settlement_id", "item_code", "charge_time", "quantity", "unit_price") AS __h
  FROM (
    SELECT
      *
    FROM (
      SELECT
        s.*
      FROM "fee_line_rows" AS s
    ) AS j
  ) AS c
  GROUP BY
    HASH("settlement_id", "item_code", "charge_time", "quantity", "unit_price")
  HAVING
    COUNT(*) >= 2
), src_c AS (
  SELECT
    *
  FROM src
  WHERE
    HASH("settlement_id", "item_code", "charge_time", "quantity", "unit_price") IN (
      SELECT
        __h
      FROM cand
    )
), agg_rows AS (
  SELECT
    "settlement_id",
    "item_code",
    "charge_time",
    "quantity",
    "unit_price",
    COUNT(*) AS "copies",
    SUM(amount) AS "total_amount",
    MIN_BY(
      amount,
      CASE WHEN NOT amount IS NULL AND NOT line_id IS NULL THEN (line_id, amount) END
    ) AS "first_amount",
    MIN(line_id) AS "first_line_id",
    MIN(item_name) AS "item_name"
  FROM src_c
  GROUP BY
    "settlement_id",
    "item_code",
    "charge_time",
    "quantity",
    "unit_price"
), agg AS (
  SELECT
    g.*,
    a."person_id",
    a."institution_id"
  FROM agg_rows AS g
  JOIN "effective_settlements" AS a
    ON g."settlement_id" = a."settlement_id"
), hits AS (
  SELECT
    *
  FROM agg
  WHERE
    TRUE AND (
      copies >= 2
    )
)
SELECT
  CAST("settlement_id" AS VARCHAR) AS "settlement_id",
  CAST("person_id" AS VARCHAR) AS "person_id",
  CAST("institution_id" AS VARCHAR) AS "institution_id",
  CAST("item_code" AS VARCHAR) AS "item_code",
  CAST(NULL AS DATE) AS "period_start",
  CAST(NULL AS DATE) AS "period_end",
  COALESCE(CAST(ARRAY[] AS ARRAY(VARCHAR)), CAST(ARRAY[] AS ARRAY(VARCHAR))) AS related_settlement_ids,
  CAST(ROUND(GREATEST(CAST(total_amount - first_amount AS DECIMAL(38, 10)), 0), 2) AS DECIMAL(16, 2)) AS amount_at_risk,
  charge_time AS "ev__charge_time",
  quantity AS "ev__quantity",
  unit_price AS "ev__unit_price",
  copies AS "ev__copies",
  first_line_id AS "ev__first_line_id",
  total_amount AS "ev__total_amount",
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
  END AS "ev__item_zh"
FROM hits
