-- veil storage, schema 12: device agreement keys and removed devices.
--
-- Removing a device renews every group's epoch, and the new epoch's secret
-- is sealed to each remaining device's agreement key (PROTOCOL.md §6.6),
-- so the account's devices record each other's. This device's own key is
-- derived from its sealed device secret: the store fills it in right after
-- the migration. A removed device stays listed, with when it was removed.

ALTER TABLE devices ADD COLUMN agreement_public BLOB;
ALTER TABLE devices ADD COLUMN removed_at INTEGER;
