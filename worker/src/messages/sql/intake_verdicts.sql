-- Adds the first step's blocking verdict to the actions of the intake that enrolled the
-- contact (§9: a verdict reached for the first message step is an action on the intake).
-- $1: jsonb array of {intake_id, action}.
UPDATE lead_intakes li SET actions = li.actions || jsonb_build_array(x.action)
FROM jsonb_to_recordset($1::jsonb) AS x(intake_id uuid, action jsonb)
WHERE li.id = x.intake_id
