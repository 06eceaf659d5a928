-- veil storage, schema 11: settings sealed at rest.
--
-- The user's own display name was a setting stored in clear, readable by
-- whoever copied the file. Values are now sealed under the storage key
-- (purpose "veil/storage/setting/<name>"). SQL cannot seal, so rows written
-- before this schema are marked unsealed here and sealed by the store
-- right after the migration, with the key it was opened with.

ALTER TABLE settings ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0;
