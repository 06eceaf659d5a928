-- veil storage, schema 6: local nicknames for contacts.
--
-- What this user calls a contact, whatever the contact calls itself: it
-- overrides the display name everywhere (commands, the UI, the API) and never
-- leaves this device. Sealed like the display name.
ALTER TABLE contacts ADD COLUMN sealed_nickname BLOB;
