-- veil storage, schema 5: sending positions reserved ahead of durability.
--
-- A device pushes its messages to the network as soon as their transaction
-- has committed, before it is durable against power loss. A power loss
-- could then bring back a sending chain older than positions already
-- sent, and the next messages would reuse their keys and nonces. Before a
-- position past reserved_until is pushed, a durable commit raises it; a
-- chain loaded after an unclean stop resumes from there. A clean close
-- sets it back to 0 (nothing was pushed past the stored chain).
ALTER TABLE sender_chains ADD COLUMN reserved_until INTEGER NOT NULL DEFAULT 0;
