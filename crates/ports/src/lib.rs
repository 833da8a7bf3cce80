//! Ports: the small traits at the seams between the pipeline and the outside world.
//!
//! The runners (projector, relay, deliveries, reminders) and the API only see these traits, so
//! the same pipeline runs on the embedded SQLite adapters and on Kafka and MongoDB.

pub mod audit;
pub mod bus;
pub mod clock;
pub mod codec;
pub mod credentials;
pub mod dead_letters;
pub mod delivery_log;
pub mod generations;
pub mod health;
pub mod mailer;
pub mod reminders;
pub mod store;
pub mod target;
pub mod topics;

pub use audit::{AuditLog, RedriveAudit, RedriveStatus};
pub use bus::{
    BusError, CommitPosition, EventBus, Header, InboundMessage, OutboundMessage, Publisher,
    Retention, StartFrom, Subscription, SubscriptionSpec, TopicSpec,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use credentials::{ApiKeyRecord, CredentialStore, KeyCreation};
pub use dead_letters::{
    DeadLetterError, DeadLetterFilter, DeadLetters, DlqName, RedriveOutcome, RedriveReport,
    RedriveRequest, RedriveSelection,
};
pub use delivery_log::{DeliveryLog, DeliveryOutcome, DeliveryRecord};
pub use generations::{Generations, ShadowBuild, SwitchError, SWITCH_LEASE};
pub use health::HealthRegistry;
pub use store::{
    ApplyOutcome, Change, EntityQuery, EntityRecord, IdempotencyRecord, Lease, Reservation, Store,
    StoreError, StoredEvent, StoredOutboxMessage,
};
pub use topics::TopicNames;
