-- veil storage, schema 9: how long each conversation keeps its messages.
--
-- NULL: for ever. Messages received (or written) longer ago than this have
-- their content erased (see `forget.rs`): the entry stays as a hash in the
-- log's DAG, its header, body, payload and author become empty.
ALTER TABLE groups ADD COLUMN retention_seconds INTEGER;
