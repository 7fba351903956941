WITH src AS (
  SELECT
    *
  FROM (
    SELECT
      s.*,
      "lk_price_cap"."price_cap"
    FROM "fee_line_rows" AS s
    LEFT JOIN (
      SELECT
        "item_code",
        MAX(price_cap) AS "price_cap"
      FROM "catalog"
      GROUP BY
        "item_code"
    ) AS "lk_price_cap"
      ON s."item_code" = "lk_price_cap"."item_code"
  ) AS j
  WHERE
    NOT price_cap IS NULL
    AND unit_price > price_cap * (
      1 + CAST('0.01' AS DECIMAL(20, 2))
    )
), hits AS (
  SELECT
    g.*,
    a."person_id",
    a."institution_id",
    a."medical_type",
    a."admit_time",
    a."admit_date",
    a."discharge_time",
    a."discharge_date",
    a."off_site"
  FROM src AS g
  JOIN "effective_settlements" AS a
    ON g."settlement_id" = a."settlement_id"
)
SELECT
  CAST("settlement_id" AS TEXT) AS "settlement_id",
  CAST("person_id" AS TEXT) AS "person_id",
  CAST("institution_id" AS TEXT) AS "institution_id",
  CAST("item_code" AS TEXT) AS "item_code",
  CAST(NULL AS DATE) AS "period_start",
  CAST(NULL AS DATE) AS "period_end",
  COALESCE(CAST(ARRAY[] AS TEXT[]), CAST(ARRAY[] AS TEXT[])) AS related_settlement_ids,
  CAST(ROUND(
    GREATEST(CAST(LEAST((
      unit_price - price_cap
    ) * quantity, amount) AS DECIMAL(38, 10)), 0),
    2
  ) AS DECIMAL(16, 2)) AS amount_at_risk,
  line_id AS "ev__line_id",
  charge_time AS "ev__charge_time",
  unit_price AS "ev__unit_price",
  price_cap AS "ev__price_cap",
  quantity AS "ev__quantity",
  item_name AS "ev__item_name",
  CASE
    WHEN COALESCE(item_name, '') = ''
    THEN item_code
    ELSE item_code || '（' || item_name || '）'
  END AS "ev__item_zh"
FROM hits
