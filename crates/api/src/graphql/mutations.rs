//! The mutations: each is the REST command of the same name, through the same
//! `commands::execute` (validation, idempotency, read-model check, publish).

use async_graphql::{Context, Object, SimpleObject, ID};
use enrollstream_domain::ids::new_id;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::errors::{from_command, from_problem, require};
use super::inputs::*;
use super::RequestContext;
use crate::auth::Scope;
use crate::commands::{execute, Accepted, CommandInput};
use crate::dto::{self, CommandBody};

/// A quote command the bus has durably; not yet in the read model.
#[derive(SimpleObject)]
pub struct QuoteAccepted {
    pub quote_id: ID,
    /// Pass it as `afterEvent` to `quote` to read your write.
    pub event_id: ID,
}

/// An application command the bus has durably; not yet in the read model.
#[derive(SimpleObject)]
pub struct ApplicationAccepted {
    pub application_id: ID,
    /// Pass it as `afterEvent` to `application` to read your write.
    pub event_id: ID,
}

impl From<Accepted> for QuoteAccepted {
    fn from(a: Accepted) -> Self {
        Self {
            quote_id: a.entity_id.into(),
            event_id: a.event_id.into(),
        }
    }
}

impl From<Accepted> for ApplicationAccepted {
    fn from(a: Accepted) -> Self {
        Self {
            application_id: a.entity_id.into(),
            event_id: a.event_id.into(),
        }
    }
}

/// Run the REST command `C` with `input` as its body. The idempotency fingerprint covers the
/// mutation, the entity and the input, so a key used for one mutation cannot replay another.
async fn run<C: CommandBody>(
    ctx: &Context<'_>,
    scope: Scope,
    mutation: &str,
    id: Option<&ID>,
    input: &impl Serialize,
) -> async_graphql::Result<Accepted> {
    require(ctx, scope)?;
    let request = ctx.data::<RequestContext>()?;
    request.count_mutation().map_err(from_problem)?;
    let body = serde_json::to_value(input)?;
    let mut hash = Sha256::new();
    for part in [
        "graphql",
        mutation,
        id.map(|i| i.as_str()).unwrap_or_default(),
        &body.to_string(),
    ] {
        hash.update(part.as_bytes());
        hash.update(b"\n");
    }
    let fingerprint = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let command = CommandInput {
        body,
        fingerprint,
        idempotency_key: request.take_idempotency_key().map_err(from_command)?,
        traceparent: request.traceparent.clone(),
        after: Vec::new(),
    };
    let (entity_id, must_exist) = match id {
        Some(id) => (id.to_string(), true),
        None => (new_id(), false),
    };
    execute::<C>(&request.shared, command, entity_id, must_exist)
        .await
        .map_err(from_command)
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// `POST /v1/quotes`.
    async fn create_quote(
        &self,
        ctx: &Context<'_>,
        input: CreateQuoteInput,
    ) -> async_graphql::Result<QuoteAccepted> {
        run::<dto::CreateQuote>(ctx, Scope::QuotesWrite, "createQuote", None, &input)
            .await
            .map(Into::into)
    }

    /// `PATCH /v1/quotes/{id}`.
    async fn update_quote(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateQuoteInput,
    ) -> async_graphql::Result<QuoteAccepted> {
        run::<dto::UpdateQuote>(ctx, Scope::QuotesWrite, "updateQuote", Some(&id), &input)
            .await
            .map(Into::into)
    }

    /// `POST /v1/applications`.
    async fn start_application(
        &self,
        ctx: &Context<'_>,
        input: StartApplicationInput,
    ) -> async_graphql::Result<ApplicationAccepted> {
        run::<dto::StartApplication>(
            ctx,
            Scope::ApplicationsWrite,
            "startApplication",
            None,
            &input,
        )
        .await
        .map(Into::into)
    }

    /// `POST /v1/applications/{id}/submit`.
    async fn submit_application(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: SubmitApplicationInput,
    ) -> async_graphql::Result<ApplicationAccepted> {
        run::<dto::SubmitApplication>(
            ctx,
            Scope::ApplicationsWrite,
            "submitApplication",
            Some(&id),
            &input,
        )
        .await
        .map(Into::into)
    }

    /// `POST /v1/applications/{id}/signature`.
    async fn record_signature(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: RecordSignatureInput,
    ) -> async_graphql::Result<ApplicationAccepted> {
        run::<dto::SignApplication>(
            ctx,
            Scope::ApplicationsWrite,
            "recordSignature",
            Some(&id),
            &input,
        )
        .await
        .map(Into::into)
    }

    /// `POST /v1/applications/{id}/approve`.
    async fn approve_application(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: Option<ApproveApplicationInput>,
    ) -> async_graphql::Result<ApplicationAccepted> {
        let input = input.unwrap_or_default();
        run::<dto::ApproveApplication>(
            ctx,
            Scope::ApplicationsWrite,
            "approveApplication",
            Some(&id),
            &input,
        )
        .await
        .map(Into::into)
    }

    /// `POST /v1/applications/{id}/decline`.
    async fn decline_application(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: DeclineApplicationInput,
    ) -> async_graphql::Result<ApplicationAccepted> {
        run::<dto::DeclineApplication>(
            ctx,
            Scope::ApplicationsWrite,
            "declineApplication",
            Some(&id),
            &input,
        )
        .await
        .map(Into::into)
    }

    /// `POST /v1/applications/{id}/withdraw`.
    async fn withdraw_application(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: Option<WithdrawApplicationInput>,
    ) -> async_graphql::Result<ApplicationAccepted> {
        let input = input.unwrap_or_default();
        run::<dto::WithdrawApplication>(
            ctx,
            Scope::ApplicationsWrite,
            "withdrawApplication",
            Some(&id),
            &input,
        )
        .await
        .map(Into::into)
    }
}
