//! The members of a group: waiting for this device's announcement to be
//! held, listing members, and removing one (a new epoch without it).

use super::*;
use crate::supervision::GuardedMap;

impl Handler<AwaitAnnounced> for GroupLog {
    type Result = ResponseFuture<Result<()>>;

    fn handle(&mut self, _: AwaitAnnounced, _: &mut Self::Context) -> Self::Result {
        let joining = &mut self.joining;
        if self.state.is_none() {
            return Box::pin(async { Err(Error::Unavailable(NAME)) });
        }
        if joining.announcement.is_none() || joining.held {
            return Box::pin(async { Ok(()) });
        }
        joining.waiters.retain(|w| !w.is_closed());
        if joining.waiters.len() >= MAX_JOIN_WAITERS {
            return Box::pin(async { Err(Error::Refused("too many callers wait for this join")) });
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        joining.waiters.push(tx);
        // Dropped if the log restarts: the caller may ask again.
        Box::pin(async move { rx.await.map_err(|_| Error::Restarting(NAME)) })
    }
}

impl Handler<GetMembers> for GroupLog {
    type Result = Result<Vec<MemberPublic>>;

    fn handle(&mut self, _: GetMembers, ctx: &mut Self::Context) -> Self::Result {
        guarded(NAME, ctx, || {
            let state = self.state.as_ref().ok_or(Error::Unavailable(NAME))?;
            Ok(state.membership.members_of(&state.epochs.current(&state.membership)))
        })
    }
}

impl Handler<RemoveMember> for GroupLog {
    // Atomic: the removal and the new epoch's announcement are written
    // before anything else touches the log.
    type Result = AtomicResponse<Self, Result<()>>;

    fn handle(&mut self, msg: RemoveMember, ctx: &mut Self::Context) -> Self::Result {
        let (group, deps, members) = (self.group, self.deps.clone(), self.members.clone());
        let prepared = guarded(NAME, ctx, || {
            let s = self.state.as_ref().ok_or(Error::Unavailable(NAME))?;
            if s.kind != GroupKind::MultiMember {
                return Err(Error::Refused("only multi-member groups remove members"));
            }
            if s.membership.is_removed(&s.me.signing) {
                return Err(Error::Refused("no longer a member of this group"));
            }
            if !s.membership.knows(&msg.member) || s.membership.is_removed(&msg.member) {
                return Err(Error::Refused("not a member of this group"));
            }
            Ok((s.epochs.clone(), s.membership.clone(), s.writer.clone(), s.me))
        });
        AtomicResponse::new(Box::pin(
            async move {
                let (mut epochs, mut membership, writer, me) = prepared?;
                let keys = epochs.keys(&writer.epoch).ok_or(Error::Unavailable(NAME))?.clone();
                // The remaining members, this account included unless it
                // leaves (its other devices need the secret too).
                let remaining: Vec<MemberPublic> =
                    membership.members_of(&writer.epoch).into_iter().filter(|m| m.signing != msg.member).collect();
                let secret = EpochSecret::generate(&mut OsEntropy)?;
                let (epoch, _) = epochs.root().epoch(&secret);
                let shares = remaining
                    .iter()
                    .map(|m| {
                        Ok(EpochShare {
                            recipient: m.signing,
                            sealed_secret: seal_epoch_secret(&group, &secret, &m.agreement, &mut OsEntropy)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let removal = MemberRemoved { member: msg.member, epoch, shares };
                let event = MetadataEvent::MemberRemoved(removal.clone());
                let (hash, lamport) = write_metadata(&deps, group, writer.epoch, &keys, &members, &event).await?;
                membership.removed(&removal, lamport, hash);
                let _ = deps.events.send(NodeEvent::MemberRemoved { group, member: msg.member });
                if msg.member == me.signing {
                    // Leaving: the new epoch's secret is dropped here.
                    return Ok((epochs, membership, writer));
                }
                deps.store.add_epoch(&group, &secret).await?;
                epochs.add(&secret);
                let recipients: Vec<MemberPublic> = remaining.into_iter().filter(|m| *m != me).collect();
                let (writer, _) =
                    enter_epoch(&deps, group, &epochs, epoch, &members, recipients, &mut membership, &me).await?;
                Ok((epochs, membership, writer))
            }
            .into_actor(self)
            .guarded_map(NAME, |r: Result<(Epochs, Membership, Writer)>, act, _| {
                let (epochs, membership, writer) = r?;
                if let Some(state) = act.state.as_mut() {
                    state.epochs = epochs;
                    state.membership = membership;
                    state.writer = writer;
                }
                Ok(())
            }),
        ))
    }
}
