//! The `GroupRegistry` actor: which groups run a log on this node, and the
//! address of each log.
//!
//! The courier starts and stops group logs and is the only writer
//! ([`LogChanged`]); the node facade asks it where a group's
//! log is ([`LogOf`]) and which groups run ([`Running`]). It used to be a
//! map behind a mutex shared by the courier and the node; an actor of its
//! own keeps one owner for it and keeps the courier's busy mailbox off the
//! facade's path (every `Node::send` asks here first).

use std::collections::BTreeMap;

use actix::{Actor, Addr, Context, Handler, Supervised};
use veil_crypto::GroupId;

use crate::{
    GroupLog,
    messages::registry::{LogChanged, LogOf, Running},
};

/// Where each running group's log is.
#[derive(Default)]
pub(crate) struct GroupRegistry {
    logs: BTreeMap<GroupId, Addr<GroupLog>>,
}

impl Actor for GroupRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
    }
}

impl Supervised for GroupRegistry {}

impl Handler<LogChanged> for GroupRegistry {
    type Result = ();

    fn handle(&mut self, LogChanged { group, log }: LogChanged, _: &mut Self::Context) {
        match log {
            Some(log) => self.logs.insert(group, log),
            None => self.logs.remove(&group),
        };
    }
}

impl Handler<LogOf> for GroupRegistry {
    type Result = Option<Addr<GroupLog>>;

    fn handle(&mut self, LogOf { group }: LogOf, _: &mut Self::Context) -> Self::Result {
        self.logs.get(&group).cloned()
    }
}

impl Handler<Running> for GroupRegistry {
    type Result = Vec<GroupId>;

    fn handle(&mut self, _: Running, _: &mut Self::Context) -> Self::Result {
        self.logs.keys().copied().collect()
    }
}
