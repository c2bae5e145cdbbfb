-- A repository's opt-in to recording bind parameter values in activity (issue 6). Off for every
-- existing repository: turning it on is a decision about personal data, not a default.
ALTER TABLE repositories ADD COLUMN record_parameters INTEGER NOT NULL DEFAULT 0;
