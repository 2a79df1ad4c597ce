//! Events between components: typed, through a transactional outbox,
//! delivered exactly once and in order.
//!
//! Follow one event:
//! 1. **Publish** (`capability::publish`). The owner of package `P` imports
//!    `P/publish` and calls `publish(event)`; the host appends the event's
//!    WAVE to its own `_moat_outbox` (`ledger::append`) in the transaction of
//!    the call, so a rolled-back call publishes nothing and a committed one
//!    loses nothing. The commit wakes the dispatcher (`Signal`).
//! 2. **Route** (`wiring`). A component that exports `P/handler` subscribes
//!    to `P`'s events; its `handle` accepts every event `P`'s owner can
//!    publish (checked at load and at swap).
//! 3. **Deliver** ([`Dispatcher`]). Each route has a worker of its own that
//!    reads the publisher's outbox after the subscriber's cursor (through a
//!    read-only connection) and hands the batch to [`Delivery`].
//! 4. **Apply** ([`Delivery`], `Component::handle_events`). One unit of work
//!    on the subscriber applies a batch and advances the cursor
//!    (`_moat_cursor`) in the same transaction, so each event takes effect
//!    exactly once, in publication order, whatever crashes.
//! 5. **Fail** ([`dead_letters`]). A handler that returns `err` or traps
//!    rolls its batch back; the events before it are applied again and
//!    commit, and it is retried with backoff. After `max_attempts` it moves
//!    to the subscriber's `_moat_dead_letter` (the cursor passes it) and
//!    delivery goes on.
//!
//! Events are stored as WAVE text: tagged by field and case names, readable
//! in `moat events`, and decoded with the subscriber's own type, so a
//! subscriber that knows more cases than the publisher sends reads them all.
//! Across hosts the same outbox is relayed through NATS (`remote`), and
//! applied through the same [`Delivery`].

pub mod dead_letters;
mod delivery;
mod dispatcher;
pub mod history;

pub use crate::ledger::{DeadLetter, OutboxEvent};
pub use crate::wiring::Subscription;
pub use delivery::{Delivery, RouteStatus, Step};
pub use dispatcher::{Dispatcher, Settled};
