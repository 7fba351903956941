-- Items with a catalog gender limit billed to a person of the other gender;
-- one hit per settlement and item, at risk: the line amounts.
WITH settlements AS (  -- effective settlements: reversal rows and what they reverse removed
    SELECT *
    FROM read_parquet('DATA/settlements.parquet')
    WHERE reversed_settlement_id IS NULL
      AND settlement_id NOT IN (SELECT reversed_settlement_id
                                FROM read_parquet('DATA/settlements.parquet')
                                WHERE reversed_settlement_id IS NOT NULL)
)
SELECT f.settlement_id, f.item_code, sum(f.amount) AS amount_at_risk
FROM read_parquet('DATA/fee_lines.parquet') AS f
JOIN settlements AS s ON s.settlement_id = f.settlement_id
JOIN read_parquet('DATA/persons.parquet') AS p ON p.person_id = s.person_id
JOIN read_parquet('DATA/catalog.parquet') AS c ON c.item_code = f.item_code
WHERE c.gender_limit IN ('1', '2') AND p.gender IN ('1', '2') AND p.gender <> c.gender_limit
GROUP BY f.settlement_id, f.item_code
