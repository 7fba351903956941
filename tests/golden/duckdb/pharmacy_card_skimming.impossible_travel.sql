WITH src AS (
  SELECT
    *
  FROM (
    SELECT
      s.*
    FROM "settlements" AS s
  ) AS j
), oth AS (
  SELECT
    *
  FROM "settlements"
), m AS (
  SELECT
    t."settlement_id",
    LIST_SORT(ARRAY_AGG(DISTINCT o.settlement_id)) AS related_settlement_ids,
    MAX("o"."admit_time") AS "earlier_time",
    ARG_MAX(
      "o"."visit_area",
      CASE
        WHEN NOT "o"."visit_area" IS NULL
        THEN ("o"."admit_time", "o"."settlement_id", "o"."visit_area")
      END
    ) AS "earlier_area"
  FROM src AS t
  JOIN oth AS o
    ON t."person_id" = o."person_id"
  WHERE
    (
      "o"."visit_area" <> "t"."visit_area"
      AND (
        "o"."admit_time" < "t"."admit_time"
        OR (
          "o"."admit_time" = "t"."admit_time" AND "o"."settlement_id" < "t"."settlement_id"
        )
      )
      AND DATE_DIFF('MICROSECOND', "o"."admit_time", "t"."admit_time") < 3 * 3600000000
    )
  GROUP BY
    t."settlement_id"
), hits AS (
  SELECT
    src.*,
    m.related_settlement_ids,
    m."earlier_time",
    m."earlier_area"
  FROM src
  JOIN m
    ON src."settlement_id" = m."settlement_id"
)
SELECT
  CAST("settlement_id" AS TEXT) AS "settlement_id",
  CAST("person_id" AS TEXT) AS "person_id",
  CAST("institution_id" AS TEXT) AS "institution_id",
  CAST(NULL AS TEXT) AS "item_code",
  CAST(NULL AS DATE) AS "period_start",
  CAST(NULL AS DATE) AS "period_end",
  COALESCE(CAST("related_settlement_ids" AS TEXT[]), CAST([] AS TEXT[])) AS related_settlement_ids,
  CAST(ROUND(GREATEST(CAST(LEAST(fund_amount, total_amount) AS DECIMAL(38, 10)), 0), 2) AS DECIMAL(16, 2)) AS amount_at_risk,
  admit_time AS "ev__admit_time",
  visit_area AS "ev__visit_area",
  earlier_time AS "ev__earlier_time",
  earlier_area AS "ev__earlier_area",
  fund_amount AS "ev__fund_amount",
  total_amount AS "ev__total_amount",
  3 AS "ev__min_hours"
FROM hits
