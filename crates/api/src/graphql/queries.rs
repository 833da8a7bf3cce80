//! The queries: a quote or an application with its event log (and the application's reminder
//! state), and pages of applications by status and broker.

use async_graphql::connection::{Connection, Edge, EmptyFields, OpaqueCursor};
use async_graphql::{Context, Enum, Json, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use enrollstream_domain::events::Submitter;
use enrollstream_domain::{Application, EntityKind, Quote};
use enrollstream_ports::{EntityQuery, EntityRecord};
use serde_json::Value;
use tokio::time::Instant;

use super::errors::{from_problem, require};
use super::RequestContext;
use crate::auth::Scope;
use crate::commands::wait_until;
use crate::problem::Problem;
use enrollstream_domain::FieldError;

/// Page size of `applications` unless `first` says otherwise, and its upper bound.
pub const DEFAULT_PAGE: usize = 20;
pub const MAX_PAGE: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[graphql(remote = "enrollstream_domain::ApplicationStatus")]
pub enum ApplicationStatus {
    Started,
    Submitted,
    AwaitingSignature,
    Signed,
    Approved,
    Declined,
    Withdrawn,
}

#[derive(SimpleObject)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: String,
}

#[derive(SimpleObject)]
pub struct Person {
    pub name: String,
    pub email: String,
}

#[derive(SimpleObject)]
pub struct BrokerView {
    pub id: String,
    pub name: String,
    pub email: String,
}

#[derive(SimpleObject)]
pub struct SignatureView {
    pub signed_by: String,
    pub signed_at: DateTime<Utc>,
}

/// One event of an entity's log, oldest first.
#[derive(SimpleObject)]
pub struct Event {
    pub id: ID,
    #[graphql(name = "type")]
    pub ty: String,
    /// The entity's version after this event.
    pub version: u64,
    pub time: DateTime<Utc>,
    pub source: String,
    pub data: Json<Value>,
    pub traceparent: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

/// The broker signature reminders of an application.
#[derive(SimpleObject)]
pub struct Reminder {
    pub status: String,
    pub signature_obtained: bool,
    pub attempts: u32,
    pub last_sent_at: Option<DateTime<Utc>>,
    pub next_due_at: Option<DateTime<Utc>>,
    pub exhausted_at: Option<DateTime<Utc>>,
    pub failures: u32,
    pub last_error: Option<String>,
}

/// What every entity shows of the read model.
struct Projected {
    record: EntityRecord,
}

impl Projected {
    async fn events(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Event>> {
        let shared = &ctx.data::<RequestContext>()?.shared;
        let log = shared
            .api
            .store
            .event_log(self.record.kind, &self.record.id)
            .await
            .map_err(|e| from_problem(Problem::store(&e)))?;
        Ok(log
            .into_iter()
            .map(|e| Event {
                id: e.event_id.into(),
                ty: e.event_type,
                version: e.version,
                time: e.occurred_at,
                source: e.envelope.source,
                data: Json(e.envelope.data),
                traceparent: e.envelope.traceparent,
                recorded_at: e.recorded_at,
            })
            .collect())
    }
}

pub struct QuoteNode {
    base: Projected,
    quote: Quote,
}

#[Object(name = "Quote")]
impl QuoteNode {
    async fn id(&self) -> ID {
        self.base.record.id.clone().into()
    }
    async fn status(&self) -> &str {
        self.quote.status.as_str()
    }
    async fn customer_id(&self) -> &str {
        &self.quote.customer_id
    }
    async fn product(&self) -> &str {
        &self.quote.product
    }
    async fn premium(&self) -> Option<Money> {
        self.quote.premium.as_ref().map(|m| Money {
            amount_minor: m.amount_minor,
            currency: m.currency.clone(),
        })
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.quote.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.quote.updated_at
    }
    /// Number of events applied to the quote.
    async fn version(&self) -> u64 {
        self.base.record.version
    }
    async fn last_event_id(&self) -> ID {
        self.base.record.last_event_id.clone().into()
    }
    /// When the read model was last written.
    async fn projected_at(&self) -> DateTime<Utc> {
        self.base.record.updated_at
    }
    #[graphql(complexity = "10 * child_complexity")]
    async fn events(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Event>> {
        self.base.events(ctx).await
    }
}

pub struct ApplicationNode {
    base: Projected,
    app: Application,
}

#[Object(name = "Application")]
impl ApplicationNode {
    async fn id(&self) -> ID {
        self.base.record.id.clone().into()
    }
    async fn status(&self) -> ApplicationStatus {
        self.app.status.into()
    }
    async fn applicant(&self) -> Person {
        Person {
            name: self.app.applicant.name.clone(),
            email: self.app.applicant.email.clone(),
        }
    }
    async fn product(&self) -> &str {
        &self.app.product
    }
    async fn quote_id(&self) -> Option<ID> {
        self.app.quote_id.clone().map(Into::into)
    }
    /// `broker` or `member`, once submitted.
    async fn submitted_by(&self) -> Option<&str> {
        self.app.submission.as_ref().map(|s| match s {
            Submitter::Broker { .. } => "broker",
            Submitter::Member => "member",
        })
    }
    async fn broker(&self) -> Option<BrokerView> {
        match &self.app.submission {
            Some(Submitter::Broker { broker }) => Some(BrokerView {
                id: broker.id.clone(),
                name: broker.name.clone(),
                email: broker.email.clone(),
            }),
            _ => None,
        }
    }
    async fn submitted_at(&self) -> Option<DateTime<Utc>> {
        self.app.submitted_at
    }
    async fn signature(&self) -> Option<SignatureView> {
        self.app.signature.as_ref().map(|s| SignatureView {
            signed_by: s.signed_by.clone(),
            signed_at: s.signed_at,
        })
    }
    async fn decision_reason(&self) -> Option<&str> {
        self.app.decision_reason.as_deref()
    }
    /// The broker was reminded the maximum number of times without a signature.
    async fn signature_overdue(&self) -> bool {
        self.app.signature_overdue
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.app.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.app.updated_at
    }
    async fn version(&self) -> u64 {
        self.base.record.version
    }
    async fn last_event_id(&self) -> ID {
        self.base.record.last_event_id.clone().into()
    }
    async fn projected_at(&self) -> DateTime<Utc> {
        self.base.record.updated_at
    }
    #[graphql(complexity = "10 * child_complexity")]
    async fn events(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Event>> {
        self.base.events(ctx).await
    }
    /// Null where this process has no reminder store or the application has no reminders.
    async fn reminder(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Reminder>> {
        let shared = &ctx.data::<RequestContext>()?.shared;
        let Some(reminders) = &shared.api.reminders else {
            return Ok(None);
        };
        let found = reminders
            .get(&self.base.record.id)
            .await
            .map_err(|e| from_problem(Problem::store(&e)))?;
        Ok(found.map(|r| Reminder {
            status: serde_json::to_value(r.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            signature_obtained: r.signature_obtained,
            attempts: r.attempts,
            last_sent_at: r.last_sent_at,
            next_due_at: r.next_due_at,
            exhausted_at: r.exhausted_at,
            failures: r.failures,
            last_error: r.last_error,
        }))
    }
}

fn decode<T: serde::de::DeserializeOwned>(record: &EntityRecord) -> async_graphql::Result<T> {
    serde_json::from_value(record.state.clone()).map_err(|e| {
        from_problem(Problem::internal(format!(
            "stored state of {} {} does not decode: {e}",
            record.kind, record.id
        )))
    })
}

fn application(record: EntityRecord) -> async_graphql::Result<ApplicationNode> {
    Ok(ApplicationNode {
        app: decode(&record)?,
        base: Projected { record },
    })
}

/// The entity, after waiting (bounded like REST's `?after=`) for `after_event` to be projected.
async fn load(
    ctx: &Context<'_>,
    kind: EntityKind,
    id: &ID,
    after_event: Option<ID>,
) -> async_graphql::Result<Option<EntityRecord>> {
    let shared = &ctx.data::<RequestContext>()?.shared;
    if let Some(event_id) = after_event {
        let deadline = Instant::now() + shared.api.config.max_read_wait;
        if !wait_until(shared, &event_id, deadline)
            .await
            .map_err(from_problem)?
        {
            return Err(from_problem(Problem::not_yet_projected(&event_id)));
        }
    }
    shared
        .api
        .store
        .entity(kind, id)
        .await
        .map_err(|e| from_problem(Problem::store(&e)))
}

pub struct Query;

#[Object]
impl Query {
    /// A quote of the read model, or null. `afterEvent` waits until that event is projected.
    async fn quote(
        &self,
        ctx: &Context<'_>,
        id: ID,
        after_event: Option<ID>,
    ) -> async_graphql::Result<Option<QuoteNode>> {
        require(ctx, Scope::Read)?;
        match load(ctx, EntityKind::Quote, &id, after_event).await? {
            Some(record) => Ok(Some(QuoteNode {
                quote: decode(&record)?,
                base: Projected { record },
            })),
            None => Ok(None),
        }
    }

    /// An application of the read model, or null. `afterEvent` waits until that event is
    /// projected.
    async fn application(
        &self,
        ctx: &Context<'_>,
        id: ID,
        after_event: Option<ID>,
    ) -> async_graphql::Result<Option<ApplicationNode>> {
        require(ctx, Scope::Read)?;
        load(ctx, EntityKind::Application, &id, after_event)
            .await?
            .map(application)
            .transpose()
    }

    /// Applications in id order (roughly creation order), by status and/or broker, a page at a
    /// time: pass a page's `pageInfo.endCursor` as `after` for the next.
    #[graphql(complexity = "first.unwrap_or(20).clamp(0, 100) as usize * child_complexity")]
    async fn applications(
        &self,
        ctx: &Context<'_>,
        status: Option<ApplicationStatus>,
        broker_id: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<
        Connection<OpaqueCursor<String>, ApplicationNode, EmptyFields, EmptyFields>,
    > {
        require(ctx, Scope::Read)?;
        let invalid = |field: &str, reason: &str| {
            from_problem(Problem::invalid(vec![FieldError::new(field, reason)]))
        };
        let first = match first {
            None => DEFAULT_PAGE,
            Some(n) if (1..=MAX_PAGE as i32).contains(&n) => n as usize,
            Some(_) => return Err(invalid("first", "must be between 1 and 100")),
        };
        let after = match after {
            None => None,
            Some(cursor) => Some(
                <OpaqueCursor<String> as async_graphql::connection::CursorType>::decode_cursor(
                    &cursor,
                )
                .map_err(|_| invalid("after", "is not a cursor of this query"))?
                .0,
            ),
        };
        let shared = &ctx.data::<RequestContext>()?.shared;
        let query = EntityQuery {
            kind: EntityKind::Application,
            status: status.map(|s| {
                enrollstream_domain::ApplicationStatus::from(s)
                    .as_str()
                    .to_string()
            }),
            broker_id,
            after: after.clone(),
            limit: first + 1,
        };
        let mut records = shared
            .api
            .store
            .list_entities(&query)
            .await
            .map_err(|e| from_problem(Problem::store(&e)))?;
        let has_next = records.len() > first;
        records.truncate(first);
        let mut page = Connection::new(after.is_some(), has_next);
        for record in records {
            let cursor = OpaqueCursor(record.id.clone());
            page.edges.push(Edge::new(cursor, application(record)?));
        }
        Ok(page)
    }
}
