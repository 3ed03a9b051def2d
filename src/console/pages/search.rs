//! Search: an account id, an email, or a Stripe id (Checkout Session, PaymentIntent, Customer)
//! leads to the account's page.

use axum::{
    extract::{Query, State},
    response::{IntoResponse, Response},
};
use maud::html;
use serde::Deserialize;

use super::layout::{self, Viewer};
use crate::{
    console::{auth::see_other, error::ConsoleError, session::Session, state::ConsoleState},
    ledger::{AccountId, AccountRef, Email, LedgerError},
};

#[derive(Deserialize)]
pub(crate) struct SearchQuery {
    #[serde(default)]
    q: String,
}

pub(crate) async fn search(
    State(state): State<ConsoleState>,
    session: Session,
    Query(query): Query<SearchQuery>,
) -> Result<Response, ConsoleError> {
    let q = query.q.trim();
    let found = if q.is_empty() {
        None
    } else {
        find(&state, q).await?
    };
    if let Some(account_id) = found {
        return Ok(see_other(&layout::account_path(&account_id), None));
    }
    let viewer = Viewer {
        session: &session,
        csrf: state.csrf(&session),
    };
    let body = html! {
        form.search method="get" action="/console/search" {
            label {
                "Account id, email, or Stripe id (cs_…, pi_…, cus_…)"
                input type="search" name="q" value=(q) autofocus required;
            }
            button type="submit" { "Search" }
        }
        @if !q.is_empty() { p.empty { "No account matches " code { (q) } "." } }
    };
    Ok(layout::page(&viewer, "Search", body).into_response())
}

/// The id of the account `q` names: an id first (an id may look like an email), then an email,
/// then a Stripe id.
async fn find(state: &ConsoleState, q: &str) -> Result<Option<String>, ConsoleError> {
    let ledger = &state.inner.ledger;
    let by_id = AccountId::parse(q).ok().map(AccountRef::Id);
    let by_email = Email::parse(q).ok().map(AccountRef::Email);
    for by in [by_id, by_email].into_iter().flatten() {
        match ledger.account_id(&by).await {
            Ok(id) => return Ok(Some(id)),
            Err(LedgerError::NotFound(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    // A Customer with a saved card is on its account; one made for a subscription only, on it.
    if q.starts_with("cus_")
        && let Some(id) = ledger.account_of_customer(q.trim()).await?
    {
        return Ok(Some(id));
    }
    Ok(state.inner.billing.account_of_stripe_id(q).await?)
}
