//! Messages of the `GroupRegistry`: where each running group's log is.

use actix::Addr;

use super::*;
use crate::GroupLog;

/// Event (from the courier): a group's log started (`Some`: it runs
/// at that address) or stopped (`None`).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct LogChanged {
    /// The group whose log started or stopped.
    pub(crate) group: GroupId,
    /// Its log, if it runs.
    pub(crate) log: Option<Addr<GroupLog>>,
}

/// Query: the log of a group, if it runs here.
#[derive(Debug, Message)]
#[rtype(result = "Option<Addr<GroupLog>>")]
pub(crate) struct LogOf {
    /// The group whose log is asked for; the answer is `None` if it does not run here.
    pub(crate) group: GroupId,
}

/// Query: the groups whose logs run here.
#[derive(Debug, Message)]
#[rtype(result = "Vec<GroupId>")]
pub(crate) struct Running;
