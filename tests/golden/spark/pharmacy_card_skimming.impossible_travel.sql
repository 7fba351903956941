WITH src AS (
  SELECT
    *
  FROM (
    SELECT
      s.*
    FROM `settlements` AS s
  ) AS j
), oth AS (
  SELECT
    *
  FROM `settlements`
), m AS (
  SELECT
    t.`settlement_id`,
    ARRAY_SORT(COLLECT_LIST(DISTINCT o.settlement_id)) AS related_settlement_ids,
    MAX(`o`.`admit_time`) AS `earlier_time`,
    MAX_BY(
      `o`.`visit_area`,
      CASE
        WHEN NOT `o`.`visit_area` IS NULL
        THEN (`o`.`admit_time`, `o`.`settlement_id`, `o`.`visit_area`)
      END
    ) AS `earlier_area`
  FROM src AS t
  JOIN oth AS o
    ON t.`person_id` = o.`person_id`
  WHERE
    (
      `o`.`visit_area` <> `t`.`visit_area`
      AND (
        `o`.`admit_time` < `t`.`admit_time`
        OR (
          `o`.`admit_time` = `t`.`admit_time` AND `o`.`settlement_id` < `t`.`settlement_id`
        )
      )
      AND (
        TIMESTAMPDIFF(
          MICROSECOND,
          CAST('1970-01-01 00:00:00' AS TIMESTAMP_NTZ),
          CAST(`t`.`admit_time` AS TIMESTAMP_NTZ)
        ) - TIMESTAMPDIFF(
          MICROSECOND,
          CAST('1970-01-01 00:00:00' AS TIMESTAMP_NTZ),
          CAST(`o`.`admit_time` AS TIMESTAMP_NTZ)
        )
      ) < 3 * 3600000000
    )
  GROUP BY
    t.`settlement_id`
), hits AS (
  SELECT
    src.*,
    m.related_settlement_ids,
    m.`earlier_time`,
    m.`earlier_area`
  FROM src
  JOIN m
    ON src.`settlement_id` = m.`settlement_id`
)
SELECT
  CAST(`settlement_id` AS STRING) AS `settlement_id`,
  CAST(`person_id` AS STRING) AS `person_id`,
  CAST(`institution_id` AS STRING) AS `institution_id`,
  CAST(NULL AS STRING) AS `item_code`,
  CAST(NULL AS DATE) AS `period_start`,
  CAST(NULL AS DATE) AS `period_end`,
  COALESCE(CAST(`related_settlement_ids` AS ARRAY<STRING>), CAST(ARRAY() AS ARRAY<STRING>)) AS related_settlement_ids,
  CAST(CASE WHEN TYPEOF(GREATEST(CAST(LEAST(fund_amount, total_amount) AS DECIMAL(38, 10)), 0)) IN ('double', 'float') THEN ROUND(GREATEST(CAST(LEAST(fund_amount, total_amount) AS DECIMAL(38, 10)), 0) * 100, 0) / 100 ELSE ROUND(GREATEST(CAST(LEAST(fund_amount, total_amount) AS DECIMAL(38, 10)), 0), 2) END AS DECIMAL(16, 2)) AS amount_at_risk,
  admit_time AS `ev__admit_time`,
  visit_area AS `ev__visit_area`,
  earlier_time AS `ev__earlier_time`,
  earlier_area AS `ev__earlier_area`,
  fund_amount AS `ev__fund_amount`,
  total_amount AS `ev__total_amount`,
  3 AS `ev__min_hours`
FROM hits
