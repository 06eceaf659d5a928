-- veil storage, schema 4: finding due outbox rows without scanning.
--
-- Entries sent and awaiting their acknowledgement wait in the outbox with a
-- later next attempt. Found through outbox_by_peer (peer, id), every push
-- stepped over all of them to reach the due ones: at thousands of messages
-- a second, tens of thousands of rows per push. This index goes straight to
-- the due rows, longest due first.
CREATE INDEX outbox_due ON outbox (peer, next_attempt_at, id);
