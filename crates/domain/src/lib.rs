//! The pure domain core of enrollstream.
//!
//! Everything here is deterministic and free of I/O: given the same inputs it gives the same
//! outputs, which is what lets the projector replay the bus and get the same read model, and what
//! lets ids toward downstream systems be derived instead of stored.

pub mod application;
pub mod envelope;
pub mod events;
pub mod ids;
pub mod limits;
pub mod money;
pub mod notification;
pub mod projection;
pub mod quote;
pub mod reminder;
pub mod routing;
pub mod schema;
pub mod validation;

pub use application::{Application, ApplicationStatus};
pub use envelope::CloudEvent;
pub use events::{ApplicationEvent, DomainEvent, EntityKind, QuoteEvent};
pub use money::Money;
pub use quote::{Quote, QuoteStatus};
pub use validation::{FieldError, TransitionError, ValidationError};
