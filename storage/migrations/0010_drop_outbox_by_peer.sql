-- veil storage, schema 10: one index fewer on every owed entry.
--
-- outbox_by_peer (peer, id) served the scan for due rows until schema 4
-- gave that its own index (outbox_due). Every query on the outbox now goes
-- through outbox_due or the (peer, entry_seq) constraint, and each index
-- costs an insert when an entry is owed and a delete when it is
-- acknowledged, on the sender's one writer, for every message.
DROP INDEX outbox_by_peer;
