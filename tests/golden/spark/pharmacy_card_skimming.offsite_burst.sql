WITH src AS (
  SELECT
    *
  FROM (
    SELECT
      s.*
    FROM `settlements` AS s
  ) AS j
  WHERE
    medical_type = '41' AND off_site
), ev AS (
  SELECT
    e.*,
    CAST((FLOOR(CAST(e.__t AS DOUBLE) / 601) / 1) AS BIGINT) AS __b
  FROM (
    SELECT
      src.*,
      (
        CAST(TIMESTAMPDIFF(
          MICROSECOND,
          CAST('1970-01-01 00:00:00' AS TIMESTAMP_NTZ),
          CAST(`admit_time` AS TIMESTAMP_NTZ)
        ) AS DOUBLE) / 1000000
      ) AS __t
    FROM src
  ) AS e
), ev_k AS (
  SELECT
    ev.*,
    k.__k
  FROM ev
  LATERAL VIEW
  EXPLODE(ARRAY(ev.__b, ev.__b - 1)) k AS __k
), starts AS (
  SELECT DISTINCT
    `institution_id`,
    __start,
    __sb
  FROM (
    SELECT
      s.`institution_id`,
      s.__t AS __start,
      s.__b AS __sb
    FROM ev AS s
    JOIN ev_k AS e
      ON s.`institution_id` = e.`institution_id`
      AND e.__k = s.__b
      AND e.__t BETWEEN s.__t AND s.__t + 600
    GROUP BY
      s.`institution_id`,
      s.`settlement_id`,
      s.__t,
      s.__b
    HAVING
      COUNT(DISTINCT `e`.`person_id`) >= 5
  ) AS w
), starts_k AS (
  SELECT
    starts.*,
    k.__k
  FROM starts
  LATERAL VIEW
  EXPLODE(ARRAY(starts.__sb, starts.__sb + 1)) k AS __k
), members AS (
  SELECT
    ev.*
  FROM ev
  WHERE
    EXISTS(
      SELECT
        1
      FROM starts_k AS st
      WHERE
        st.`institution_id` = ev.`institution_id`
        AND st.__k = ev.__b
        AND ev.__t BETWEEN st.__start AND st.__start + 600
    )
), runs AS (
  SELECT
    g.*,
    SUM(
      CASE WHEN g.__gap > 600 OR (
        g.__gap >= 600 AND NOT g.__opens
      ) THEN 1 ELSE 0 END
    ) OVER (
      PARTITION BY `institution_id`
      ORDER BY `admit_time` NULLS LAST, `settlement_id` NULLS LAST
      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS __run
  FROM (
    SELECT
      p.*,
      NOT st.__start IS NULL AS __opens
    FROM (
      SELECT
        members.*,
        __t - LAG(__t) OVER (
          PARTITION BY `institution_id`
          ORDER BY `admit_time` NULLS LAST, `settlement_id` NULLS LAST
        ) AS __gap,
        LAG(__t) OVER (
          PARTITION BY `institution_id`
          ORDER BY `admit_time` NULLS LAST, `settlement_id` NULLS LAST
        ) AS __prev
      FROM members
    ) AS p
    LEFT JOIN starts AS st
      ON p.`institution_id` = st.`institution_id` AND st.__start = p.__prev
  ) AS g
), seqd AS (
  SELECT
    runs.*,
    ROW_NUMBER() OVER (
      PARTITION BY `institution_id`, __run
      ORDER BY `admit_time` NULLS LAST, `settlement_id` NULLS LAST
    ) AS member_seq,
    COUNT(*) OVER (PARTITION BY `institution_id`, __run) AS member_count,
    FIRST_VALUE(settlement_id) OVER (
      PARTITION BY `institution_id`, __run
      ORDER BY `admit_time` NULLS LAST, `settlement_id` NULLS LAST
    ) AS __anchor_settlement
  FROM runs
), agg AS (
  SELECT
    `institution_id`,
    __run,
    COALESCE(
      ARRAY_SORT(
        COLLECT_LIST(DISTINCT settlement_id) FILTER(WHERE
          settlement_id <> __anchor_settlement)
      ),
      CAST(ARRAY() AS ARRAY<STRING>)
    ) AS related_settlement_ids,
    MIN(`admit_time`) AS first_time,
    MAX(`admit_time`) AS last_time,
    COUNT(DISTINCT person_id) AS `cards`,
    COUNT(*) AS `settlements_in_burst`,
    SUM(LEAST(fund_amount, total_amount)) AS `burst_fund`
  FROM seqd
  GROUP BY
    `institution_id`,
    __run
), hits AS (
  SELECT
    seqd.*,
    agg.related_settlement_ids,
    agg.first_time,
    agg.last_time,
    agg.`cards`,
    agg.`settlements_in_burst`,
    agg.`burst_fund`
  FROM seqd
  JOIN agg
    ON seqd.`institution_id` = agg.`institution_id` AND seqd.__run = agg.__run
  WHERE
    seqd.member_seq = 1
)
SELECT
  CAST(`settlement_id` AS STRING) AS `settlement_id`,
  CAST(NULL AS STRING) AS `person_id`,
  CAST(`institution_id` AS STRING) AS `institution_id`,
  CAST(NULL AS STRING) AS `item_code`,
  CAST(NULL AS DATE) AS `period_start`,
  CAST(NULL AS DATE) AS `period_end`,
  COALESCE(CAST(`related_settlement_ids` AS ARRAY<STRING>), CAST(ARRAY() AS ARRAY<STRING>)) AS related_settlement_ids,
  CAST(CASE WHEN TYPEOF(GREATEST(CAST(burst_fund AS DECIMAL(38, 10)), 0)) IN ('double', 'float') THEN ROUND(GREATEST(CAST(burst_fund AS DECIMAL(38, 10)), 0) * 100, 0) / 100 ELSE ROUND(GREATEST(CAST(burst_fund AS DECIMAL(38, 10)), 0), 2) END AS DECIMAL(16, 2)) AS amount_at_risk,
  cards AS `ev__cards`,
  settlements_in_burst AS `ev__settlements_in_burst`,
  first_time AS `ev__first_time`,
  last_time AS `ev__last_time`,
  burst_fund AS `ev__burst_fund`
FROM hits
