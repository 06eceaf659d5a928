-- veil storage, schema 8: limits on a contact link.
--
-- A link may stop answering at a time (`expires_at`, Unix seconds) or
-- after a number of completed requests (`uses_left` counts down to 0).
-- NULL: no such limit. A spent link answers nothing, like a reset one.
ALTER TABLE contact_links ADD COLUMN expires_at INTEGER;
ALTER TABLE contact_links ADD COLUMN uses_left INTEGER;
