//! The members of a group: waiting for this device's announcement to be
//! held, listing members, removing one (a new epoch without it), and
//! renewing the epoch without devices this account removed.

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
            Ok(())
        });
        match prepared {
            Ok(()) => self.start_epoch(NewEpoch::Removing(msg.member)),
            Err(e) => AtomicResponse::new(Box::pin(actix::fut::ready(Err(e)))),
        }
    }
}

impl Handler<RenewEpoch> for GroupLog {
    // Atomic, as a removal.
    type Result = AtomicResponse<Self, Result<()>>;

    fn handle(&mut self, msg: RenewEpoch, _: &mut Self::Context) -> Self::Result {
        self.start_epoch(NewEpoch::Renewing(msg.devices))
    }
}

/// This account's remaining devices other than this one, with their
/// agreement keys: who gets a renewed epoch's secret besides the other
/// members. A device listed without one (recorded before they existed)
/// cannot get it, and is skipped.
pub(crate) async fn remaining_devices(store: &Store) -> Result<Vec<(VerifyKey, veil_crypto::AgreementPublic)>> {
    let devices = store.devices().await?;
    let remaining = devices.iter().filter(|d| !d.is_this_device && d.removed_at.is_none());
    Ok(remaining
        .filter_map(|d| {
            if d.agreement.is_none() {
                tracing::debug!(actor = NAME, "a device without an agreement key gets no renewed epoch");
            }
            Some((d.device, d.agreement?))
        })
        .collect())
}

/// Why a new epoch starts.
pub(super) enum NewEpoch {
    /// A member is removed (this member's own key: it leaves).
    Removing(VerifyKey),
    /// This account removed devices: the new secret goes to the other
    /// members and to this account's remaining devices (their agreement
    /// keys), not to this member's key, which every device holds.
    Renewing(Vec<veil_crypto::AgreementPublic>),
}

impl GroupLog {
    /// Starts a new epoch for `why`, atomically.
    fn start_epoch(&mut self, why: NewEpoch) -> AtomicResponse<Self, Result<()>> {
        let (group, deps, members) = (self.group, self.deps.clone(), self.members.clone());
        let prepared = (|| {
            let s = self.state.as_ref().ok_or(Error::Unavailable(NAME))?;
            if s.membership.is_removed(&s.me.signing) {
                return Err(Error::Refused("no longer a member of this group"));
            }
            Ok((s.epochs.clone(), s.membership.clone(), s.writer.clone(), s.me))
        })();
        AtomicResponse::new(Box::pin(
            async move {
                let (epochs, membership, writer, me) = prepared?;
                write_epoch_start(&deps, group, &members, (epochs, membership, writer), me, why).await
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

/// Writes the event starting a new epoch in `writer`'s epoch, and moves
/// this device into it (unless this member leaves).
pub(super) async fn write_epoch_start(
    deps: &GroupLogDeps,
    group: GroupId,
    members: &[Addressee],
    (mut epochs, mut membership, writer): (Epochs, Membership, Writer),
    me: MemberPublic,
    why: NewEpoch,
) -> Result<(Epochs, Membership, Writer)> {
    let keys = epochs.keys(&writer.epoch).ok_or(Error::Unavailable(NAME))?.clone();
    let secret = EpochSecret::generate(&mut OsEntropy)?;
    let (epoch, _) = epochs.root().epoch(&secret);
    let removed = match &why {
        NewEpoch::Removing(member) => Some(*member),
        NewEpoch::Renewing(_) => None,
    };
    // Removing: every remaining member, this account included unless it
    // leaves (its other devices need the secret too). Renewing: the others.
    let sealed_to: Vec<MemberPublic> = membership
        .members_of(&writer.epoch)
        .into_iter()
        .filter(|m| Some(m.signing) != removed && (removed.is_some() || *m != me))
        .collect();
    let shares = sealed_to
        .iter()
        .map(|m| {
            Ok(EpochShare {
                recipient: m.signing,
                sealed_secret: seal_epoch_secret(&group, &secret, &m.agreement, &mut OsEntropy)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let event = match &why {
        NewEpoch::Removing(member) => MetadataEvent::MemberRemoved(MemberRemoved { member: *member, epoch, shares }),
        NewEpoch::Renewing(devices) => {
            let device_shares = devices
                .iter()
                .map(|d| Ok(seal_epoch_secret_to_device(&group, &secret, d, &mut OsEntropy)?))
                .collect::<Result<Vec<_>>>()?;
            MetadataEvent::EpochRenewed(EpochRenewed { epoch, shares, device_shares })
        }
    };
    let start = EpochStart::of(&event).ok_or(Error::Unavailable(NAME))?;
    let (hash, lamport) = write_metadata(deps, group, writer.epoch, &keys, members, &event).await?;
    membership.started(&start, Some(me.signing), Some(writer.epoch), (lamport, hash));
    if let Some(member) = removed {
        let _ = deps.events.send(NodeEvent::MemberRemoved { group, member });
        if member == me.signing {
            // Leaving: the new epoch's secret is dropped here.
            return Ok((epochs, membership, writer));
        }
    }
    deps.store.add_epoch(&group, &secret).await?;
    epochs.add(&secret);
    let recipients = others(&membership, &epoch, &me);
    let (writer, _) = enter_epoch(deps, group, &epochs, epoch, members, recipients, &mut membership, &me).await?;
    Ok((epochs, membership, writer))
}
