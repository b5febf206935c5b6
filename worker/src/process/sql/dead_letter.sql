-- Records an intake as dead-lettered. A finished intake is never downgraded; an unknown
-- account leaves no record (there is nobody to show it to).
INSERT INTO lead_intakes (id, account_id, user_id, token_id, status, payload,
                          attempts, last_error, received_at, processed_at, updated_at)
SELECT $1, $2, $3, (SELECT id FROM api_tokens WHERE id = $4), 'dead_lettered',
       $5, $6, $7, $8, now(), now()
WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $2)
ON CONFLICT (id) DO UPDATE SET status = 'dead_lettered',
  attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error,
  processed_at = now(), updated_at = now()
WHERE lead_intakes.status NOT IN ('created', 'updated', 'merged', 'duplicate')
