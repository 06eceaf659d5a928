//! Waits on a node's events, bounded.

use std::time::Duration;

use tokio::{sync::broadcast, time::timeout};
use veil_actors::NodeEvent;

/// How long one expected event or condition may take: a bound, never a pause.
pub const WAIT: Duration = Duration::from_secs(60);

/// How often [`until`] checks again when no event came.
pub const RECHECK: Duration = Duration::from_millis(100);

/// Waits for the first event `pick` maps to something; events that lagged
/// behind are skipped.
pub async fn wait_for<T>(
    events: &mut broadcast::Receiver<NodeEvent>,
    mut pick: impl FnMut(NodeEvent) -> Option<T>,
) -> T {
    timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if let Some(t) = pick(e) {
                        return t;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event channel closed: {e}"),
            }
        }
    })
    .await
    .expect("the event came in time")
}

/// Waits until `check` holds, checking again after every event and at
/// least every [`RECHECK`] (a condition may turn true without an event,
/// or on an event that came before the wait began).
pub async fn until<F, Fut>(events: &mut broadcast::Receiver<NodeEvent>, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    until_within(WAIT, events, check).await;
}

/// [`until`], bounded by `limit` instead of [`WAIT`] (for slow paths such
/// as Tor; a bound, never a pause).
pub async fn until_within<F, Fut>(limit: Duration, events: &mut broadcast::Receiver<NodeEvent>, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    timeout(limit, async {
        while !check().await {
            // No event within RECHECK is fine: check again.
            if let Ok(Err(broadcast::error::RecvError::Closed)) = timeout(RECHECK, events.recv()).await {
                panic!("event channel closed");
            }
        }
    })
    .await
    .expect("the condition held in time");
}
