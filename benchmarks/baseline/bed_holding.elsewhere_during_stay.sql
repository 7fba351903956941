-- Another outpatient (11, 14) or pharmacy (41) settlement of the same person at another
-- institution dated strictly between the stay's admit date and discharge date.
WITH settlements AS (  -- effective settlements: reversal rows and what they reverse removed
    SELECT *
    FROM read_parquet('DATA/settlements.parquet')
    WHERE reversed_settlement_id IS NULL
      AND settlement_id NOT IN (SELECT reversed_settlement_id
                                FROM read_parquet('DATA/settlements.parquet')
                                WHERE reversed_settlement_id IS NOT NULL)
)
SELECT stay.settlement_id, any_value(least(stay.fund_amount, stay.total_amount)) AS amount_at_risk
FROM settlements AS stay
JOIN settlements AS other ON other.person_id = stay.person_id
WHERE stay.medical_type = '21' AND stay.discharge_time IS NOT NULL
  AND other.medical_type IN ('11', '14', '41')
  AND other.institution_id <> stay.institution_id
  AND CAST(other.admit_time AS DATE) > CAST(stay.admit_time AS DATE)
  AND CAST(other.admit_time AS DATE) < CAST(stay.discharge_time AS DATE)
GROUP BY stay.settlement_id
