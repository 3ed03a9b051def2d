//! Purchases completed before the move (`credits import purchases`): checked against the
//! accounts and packs they name, then recorded through the writer as completed purchases that
//! credit nothing (the balance came with the account import), once per Checkout Session.

use super::{
    Billing, BillingError,
    fulfilment::{ImportedPurchase, Job},
    store::{self, Purchase},
};
use crate::catalog::Pack;

/// What importing one purchase did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PurchaseImport {
    Recorded,
    /// The session's purchase is recorded as imported already.
    Unchanged,
    /// The session has a purchase that says otherwise (named fields); left as it is.
    Differs(String),
}

/// How a stored purchase differs from an imported one, field by field.
fn differences(stored: &Purchase, imported: &Purchase) -> Option<String> {
    let mut fields = Vec::new();
    let mut check = |name: &str, stored: String, imported: String| {
        if stored != imported {
            fields.push(format!("{name} {stored} stored, {imported} imported"));
        }
    };
    check(
        "account_id",
        stored.account_id.clone(),
        imported.account_id.clone(),
    );
    check(
        "credit_pack_id",
        stored.credit_pack_id.clone(),
        imported.credit_pack_id.clone(),
    );
    check(
        "credits",
        stored.credits.to_string(),
        imported.credits.to_string(),
    );
    check("amount", stored.amount.to_string(), imported.amount.to_string());
    check("currency", stored.currency.clone(), imported.currency.clone());
    let intent = |p: &Purchase| p.payment_intent_id.clone().unwrap_or_else(|| "-".to_owned());
    check("stripe_payment_intent_id", intent(stored), intent(imported));
    (!fields.is_empty()).then(|| fields.join(", "))
}

impl Billing {
    /// Why each purchase cannot be recorded (its account, or its pack among `packs`, is
    /// unknown), by position.
    pub(crate) async fn unknown_references(
        &self,
        purchases: &[Purchase],
        packs: &[Pack],
    ) -> Result<Vec<Option<String>>, BillingError> {
        let mut ids: Vec<&str> = purchases.iter().map(|p| p.account_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let accounts = self.ledger.existing_accounts(&ids).await?;
        Ok(purchases
            .iter()
            .map(|p| {
                if !accounts.contains(&p.account_id) {
                    Some(format!(
                        "account_id: no account {} (import the accounts first)",
                        p.account_id
                    ))
                } else if !packs.iter().any(|pack| pack.id == p.credit_pack_id) {
                    Some(format!(
                        "credit_pack_id: no pack {} (declare it in the packs file; \
                         once removed from it, it stays, inactive)",
                        p.credit_pack_id
                    ))
                } else {
                    None
                }
            })
            .collect())
    }

    /// Records one historical purchase, once per session.
    #[tracing::instrument(skip_all, fields(session_id = purchase.session_id.as_str()), err)]
    pub(crate) async fn import_purchase(&self, purchase: Purchase) -> Result<PurchaseImport, BillingError> {
        let imported = purchase.clone();
        let ImportedPurchase { recorded, inserted } = self
            .run(|answer| Job::Import {
                purchase,
                inserted: false,
                answer,
            })
            .await?;
        if inserted {
            return Ok(PurchaseImport::Recorded);
        }
        Ok(match differences(&recorded, &imported) {
            None => PurchaseImport::Unchanged,
            Some(fields) => PurchaseImport::Differs(fields),
        })
    }

    /// What importing these purchases would do, read as committed now; nothing is written.
    pub(crate) async fn dry_run_purchases(
        &self,
        purchases: &[Purchase],
    ) -> Result<Vec<PurchaseImport>, BillingError> {
        let sessions: Vec<&str> = purchases.iter().map(|p| p.session_id.as_str()).collect();
        let stored = store::by_sessions(&self.db, &sessions).await?;
        Ok(purchases
            .iter()
            .map(|p| match stored.iter().find(|s| s.session_id == p.session_id) {
                None => PurchaseImport::Recorded,
                Some(s) => differences(s, p).map_or(PurchaseImport::Unchanged, PurchaseImport::Differs),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::billing::PurchaseStatus;

    fn purchase() -> Purchase {
        Purchase {
            id: "p".to_owned(),
            account_id: "user-1".to_owned(),
            credit_pack_id: "standard".to_owned(),
            credits: 500,
            amount: 1500,
            currency: "usd".to_owned(),
            amount_refunded: 0,
            session_id: "cs_1".to_owned(),
            payment_intent_id: Some("pi_1".to_owned()),
            checkout_url: None,
            idempotency_key: None,
            status: PurchaseStatus::Completed,
            created_at: Utc::now(),
            completed_at: Some(Utc::now()),
            credits_expire_at: None,
        }
    }

    #[test]
    fn a_stored_purchase_differs_by_the_fields_an_import_carries_only() {
        let stored = Purchase {
            id: "other".to_owned(),
            amount_refunded: 500,
            status: PurchaseStatus::Refunded,
            ..purchase()
        };
        assert_eq!(
            differences(&stored, &purchase()),
            None,
            "refunds since are not a difference"
        );
        let other = Purchase {
            credits: 400,
            payment_intent_id: None,
            ..purchase()
        };
        assert_eq!(
            differences(&stored, &other).as_deref(),
            Some("credits 500 stored, 400 imported, stripe_payment_intent_id pi_1 stored, - imported")
        );
    }
}
