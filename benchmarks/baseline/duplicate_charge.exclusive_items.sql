-- Two mutually exclusive items billed on one calendar day of one settlement; the cheaper
-- item that day (ties: the smaller code) is flagged, at risk: its amount that day.
WITH settlements AS (  -- effective settlements: reversal rows and what they reverse removed
    SELECT *
    FROM read_parquet('DATA/settlements.parquet')
    WHERE reversed_settlement_id IS NULL
      AND settlement_id NOT IN (SELECT reversed_settlement_id
                                FROM read_parquet('DATA/settlements.parquet')
                                WHERE reversed_settlement_id IS NOT NULL)
),
pairs AS (
    SELECT item_code_a AS item_code, item_code_b AS partner
    FROM item_pairs WHERE relation = 'exclusive'
    UNION
    SELECT item_code_b, item_code_a FROM item_pairs WHERE relation = 'exclusive'
),
item_days AS (
    SELECT settlement_id, item_code, CAST(charge_time AS DATE) AS charge_date,
           sum(amount) AS amount
    FROM read_parquet('DATA/fee_lines.parquet')
    WHERE item_code IN (SELECT item_code FROM pairs)
      AND settlement_id IN (SELECT settlement_id FROM settlements)
    GROUP BY settlement_id, item_code, charge_date
)
SELECT DISTINCT a.settlement_id, a.item_code, a.charge_date, a.amount AS amount_at_risk
FROM item_days AS a
JOIN pairs AS p ON p.item_code = a.item_code
JOIN item_days AS b
  ON b.settlement_id = a.settlement_id AND b.charge_date = a.charge_date
 AND b.item_code = p.partner
WHERE a.amount < b.amount OR (a.amount = b.amount AND a.item_code < b.item_code)
