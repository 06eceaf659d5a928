//! Loading a group's log: its members and epochs from the metadata log,
//! this device's chain, and the epoch it writes in.

use super::*;

pub(super) struct Loaded {
    /// A chain share with members learned lately is scheduled (`share`).
    pub(super) share_scheduled: bool,
    /// The announcement loading wrote (a device joining), if it wrote one.
    pub(super) announced: Option<EntryHash>,
    /// The epochs this member holds keys for.
    pub(super) epochs: Epochs,
    pub(super) kind: GroupKind,
    pub(super) me: MemberPublic,
    /// Who is in which epoch, and who was removed.
    pub(super) membership: Membership,
    /// Where this device writes: the current epoch, its key and chain there,
    /// and who it shared the chain with.
    pub(super) writer: Writer,
    /// Heads and next Lamport clock of the message log.
    pub(super) heads: Vec<EntryHash>,
    pub(super) lamport: u64,
    /// Receiving chains as stored, of the devices read from lately (one per
    /// member device at most): a batch of messages needs no read of them.
    /// Only receiving writes them; a batch that fails drops them all.
    pub(super) chains: HashMap<VerifyKey, ReceiverChain>,
    /// Entries that came before a parent of theirs (see `orphans`).
    pub(super) orphans: Orphans,
    /// Entries that came before their epoch's keys (see `keyless`).
    pub(super) keyless: super::keyless::Keyless,
    /// Authors' keys, parsed once.
    pub(super) authors: AuthorKeys,
    /// Positions of the entries stored lately (see `known`).
    pub(super) known: Known,
}

/// Rebuilds the in-memory view from storage: epochs, members, this
/// device's writer (announced in the current epoch if it was not yet),
/// heads and the next Lamport clock.
pub(super) async fn load(deps: GroupLogDeps, group: GroupId, members: Vec<Addressee>) -> Result<Loaded> {
    let store = &deps.store;
    let record = store.group(&group).await?.ok_or(Error::UnknownGroup)?;
    let mut epochs = Epochs::new(GroupKeys::derive(&record.secret), &store.epochs(&group).await?);
    let me = deps.member.send(GetMemberKeys { group }).await.map_err(mailbox("identity-vault"))??;
    let mut membership = Membership::default();
    let metadata = store.entries_after(&group, EntryKind::Metadata, None, MAX_METADATA).await?;
    let events: Vec<(MetadataEvent, &veil_storage::EntryRecord)> =
        metadata.iter().filter_map(|e| Some((MetadataEvent::decode(e.payload.as_deref()?).ok()?, e))).collect();
    for (event, e) in &events {
        match event {
            MetadataEvent::MemberJoined(j) => {
                membership.joined(j);
            }
            MetadataEvent::MemberRemoved(_) | MetadataEvent::EpochRenewed(_) => {
                let Some(start) = EpochStart::of(event) else { continue };
                // Stored only once its author's announcement was: known.
                let author = e.author.and_then(|a| membership.device(&a).map(|(m, _)| m.signing));
                let written_in = epochs.open(&e.sealed, &mut AuthorKeys::default()).ok().map(|(epoch, _)| epoch);
                membership.started(&start, author, written_in, (e.lamport, e.hash));
                // A removal stored just before a crash may not have had its
                // epoch kept yet.
                if let Some(share) = start.share_for(&me.signing, author.as_ref())
                    && !epochs.holds(&start.epoch)
                    && let Ok(secret) = open_epoch(&deps, group, &epochs, &start, &share).await?
                {
                    store.add_epoch(&group, &secret).await?;
                    epochs.add(&secret);
                }
            }
        }
    }
    let epoch = epochs.current(&membership);
    let device = deps.device.send(GetDeviceKey { group, epoch }).await.map_err(mailbox("identity-vault"))??;
    let (mut writer, announced) = if membership.device(&device).is_some() {
        let shared_with = events
            .iter()
            .filter_map(|(event, _)| match event {
                MetadataEvent::MemberJoined(j) if j.device == device => {
                    Some(j.chain_shares.iter().map(|s| s.recipient))
                }
                _ => None,
            })
            .flatten()
            .collect();
        let chain = match store.sender_chain(&group).await? {
            // Past every position that may have been sent before an
            // unclean stop undid its commit.
            Some(record) => {
                let mut chain = SenderChain::from_state(record.state.clone());
                chain.skip_to(record.resume_at())?;
                chain
            }
            None => return Err(Error::Refused("this device announced itself but its chain is lost")),
        };
        let reservation = Reservation::at(chain.state().next);
        (Writer { epoch, chain, reservation, shared_with }, None)
    } else {
        let recipients = match record.kind {
            GroupKind::Contact => contact_recipients(store, &group).await?,
            GroupKind::MultiMember => others(&membership, &epoch, &me),
        };
        enter_epoch(&deps, group, &epochs, epoch, &members, recipients, &mut membership, &me).await?
    };
    // A start this account's removed devices may hold the secret of, not
    // renewed before a stop: renewed now (see `Membership::must_renew`).
    if !membership.is_removed(&me.signing) && !deps.removed() && membership.must_renew(&me.signing, &writer.epoch) {
        let devices = super::members::remaining_devices(store).await?;
        let renewing =
            super::members::NewEpoch::Renewing(devices.into_iter().map(|(_, agreement)| agreement).collect());
        (epochs, membership, writer) =
            super::members::write_epoch_start(&deps, group, &members, (epochs, membership, writer), me, renewing)
                .await?;
    }
    // Members learned before a stop and not shared with yet: nothing was
    // written since they were learned (appends share first), so the
    // chain's position now is the one they are owed.
    let owed = share::newcomers(record.kind, &membership, &writer, &me);
    if !owed.is_empty() {
        let keys = epochs.keys(&writer.epoch).ok_or(Error::Unavailable(NAME))?;
        let (joined, _) = announce(&deps, group, writer.epoch, keys, &writer.chain, &members, owed).await?;
        share::record_share(&mut membership, &mut writer, &joined);
    }
    let heads = store.heads(&group, EntryKind::Message).await?;
    let lamport = max_lamport(store, &group, &heads).await?;
    Ok(Loaded {
        share_scheduled: false,
        announced,
        epochs,
        kind: record.kind,
        me,
        membership,
        writer,
        heads,
        lamport,
        chains: HashMap::new(),
        orphans: Orphans::default(),
        keyless: super::keyless::Keyless::default(),
        authors: AuthorKeys::default(),
        known: Known::default(),
    })
}

/// The members of `epoch` other than `me`.
pub(super) fn others(membership: &Membership, epoch: &EpochId, me: &MemberPublic) -> Vec<MemberPublic> {
    membership.members_of(epoch).into_iter().filter(|m| m != me).collect()
}

/// Opens this device's share of a removal's or renewal's epoch secret;
/// `Ok(Err(()))` if it does not open or names another epoch.
pub(super) async fn open_epoch(
    deps: &GroupLogDeps,
    group: GroupId,
    epochs: &Epochs,
    start: &EpochStart,
    share: &SealedShare,
) -> Result<std::result::Result<EpochSecret, ()>> {
    let opened = deps
        .open_epoch
        .send(OpenEpochShare { group, share: share.clone() })
        .await
        .map_err(mailbox("identity-vault"))?;
    Ok(match opened {
        Ok(secret) if epochs.root().epoch(&secret).0 == start.epoch => Ok(secret),
        _ => Err(()),
    })
}

/// Starts writing in `epoch`: a fresh sending chain, announced (with this
/// epoch's device key) and shared with `recipients`; returns the writer and
/// the announcement's hash. Unless this member was removed: then it writes
/// nowhere (no announcement), and the old writer is returned unchanged by
/// the caller.
#[allow(clippy::too_many_arguments)]
pub(super) async fn enter_epoch(
    deps: &GroupLogDeps,
    group: GroupId,
    epochs: &Epochs,
    epoch: EpochId,
    members: &[Addressee],
    recipients: Vec<MemberPublic>,
    membership: &mut Membership,
    me: &MemberPublic,
) -> Result<(Writer, Option<EntryHash>)> {
    let keys = epochs.keys(&epoch).ok_or(Error::Refused("no keys for the current epoch"))?;
    let chain = SenderChain::generate(&mut OsEntropy)?;
    if membership.is_removed(&me.signing) {
        return Ok((Writer { epoch, chain, reservation: Reservation::at(0), shared_with: HashSet::new() }, None));
    }
    deps.store.save_sender_chain(&group, chain.state()).await?;
    let (joined, hash) = announce(deps, group, epoch, keys, &chain, members, recipients).await?;
    membership.joined(&joined);
    let shared_with = joined.chain_shares.iter().map(|s| s.recipient).collect();
    Ok((Writer { epoch, chain, reservation: Reservation::at(0), shared_with }, Some(hash)))
}

/// The highest Lamport clock among the stored `heads` of `group` (one
/// query, no entry decoded: a busy group has many heads).
pub(super) async fn max_lamport(store: &Store, group: &GroupId, heads: &[EntryHash]) -> Result<u64> {
    Ok(store.positions(group, heads).await?.into_iter().map(|(_, _, lamport)| lamport).max().unwrap_or(0))
}
