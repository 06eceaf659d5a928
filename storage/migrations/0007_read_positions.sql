-- veil storage, schema 7: how far the user has read each conversation.
--
-- The position (Lamport clock, entry hash) of the last message marked read;
-- the messages after it that others wrote are the conversation's unread ones.
-- It only moves forward.
ALTER TABLE groups ADD COLUMN read_lamport INTEGER;
ALTER TABLE groups ADD COLUMN read_hash BLOB;
