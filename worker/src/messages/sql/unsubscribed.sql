-- Numbers the provider reports unsubscribed (code 21610) join the account's do-not-contact
-- list for SMS. $1: jsonb array of {account_id, phone_number}.
INSERT INTO do_not_contact (account_id, phone_number, channel, reason, source)
SELECT x.account_id, x.phone_number, 'sms', 'the provider reports the recipient unsubscribed', 'provider'
FROM jsonb_to_recordset($1::jsonb) AS x(account_id bigint, phone_number text)
ON CONFLICT (account_id, phone_number, channel) DO NOTHING
