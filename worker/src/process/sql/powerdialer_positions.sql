-- $1 new PowerDialer positions (int), each larger than every one drawn before it: a
-- "bottom" entry takes one, a "top" entry its negation (migration
-- m20261206_000016_powerdialer_positions), so neither reads nor locks its list.
SELECT nextval('powerdialer_positions') AS position FROM generate_series(1, $1::int)
