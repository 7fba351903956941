-- Readmission to the same institution within 15 days of the nearest earlier discharge,
-- both main diagnoses in the same ICD-10 category, neither a planned-care category;
-- at risk: the later stay's fund amount, at most its total.
WITH settlements AS (  -- effective settlements: reversal rows and what they reverse removed
    SELECT *
    FROM read_parquet('DATA/settlements.parquet')
    WHERE reversed_settlement_id IS NULL
      AND settlement_id NOT IN (SELECT reversed_settlement_id
                                FROM read_parquet('DATA/settlements.parquet')
                                WHERE reversed_settlement_id IS NOT NULL)
),
stays AS (
    SELECT settlement_id, person_id, institution_id, admit_time, fund_amount, total_amount,
           CAST(admit_time AS DATE) AS admit_date,
           CAST(discharge_time AS DATE) AS discharge_date,
           upper(substr(diagnosis_code, 1, 3)) AS category
    FROM settlements
    WHERE medical_type = '21'  -- a later admission may not be discharged yet
),
paired AS (
    SELECT *,
           lag(discharge_date) OVER w AS prev_discharge_date,
           lag(category) OVER w AS prev_category
    FROM stays
    WINDOW w AS (PARTITION BY person_id, institution_id ORDER BY admit_time, settlement_id)
)
SELECT settlement_id, least(fund_amount, total_amount) AS amount_at_risk
FROM paired
WHERE date_diff('day', prev_discharge_date, admit_date) BETWEEN 0 AND 15
  AND category = prev_category
  AND category NOT IN ('Z51', 'Z49', 'O80', 'O81', 'O82', 'O83', 'O84')
