//! UpdateAccountSettings as billing sees it: an auto top-up must name a pack that is sold, and
//! its monthly limit must allow at least one of it; the ledger checks the rest (ranges, the
//! saved card) in the command.

use super::{Billing, BillingError};
use crate::{
    catalog,
    ledger::{
        AccountRef, InvalidInput, LedgerError,
        commands::{SettingsChange, SettingsView, UpdateSettings},
    },
};

impl Billing {
    /// Checks the auto top-up's pack, then changes the account's settings.
    pub(crate) async fn update_settings(
        &self,
        account: AccountRef,
        change: SettingsChange,
    ) -> Result<SettingsView, BillingError> {
        if let Some(top_up) = change.auto_top_up.as_ref().filter(|t| t.enabled) {
            let pack = catalog::store::pack_by_id(&self.db, &top_up.pack_id)
                .await?
                .filter(|pack| pack.active)
                .ok_or_else(|| {
                    InvalidInput::new(
                        "auto_top_up.pack_id",
                        format!("no active pack {:?}", top_up.pack_id),
                    )
                })?;
            if top_up.monthly_limit < pack.unit_amount {
                return Err(InvalidInput::new(
                    "auto_top_up.monthly_limit",
                    format!(
                        "{} is less than one {} pack ({} {})",
                        top_up.monthly_limit, pack.id, pack.unit_amount, pack.currency
                    ),
                )
                .into());
            }
        }
        self.ledger
            .send(UpdateSettings {
                account: account.clone(),
                change,
            })
            .await
            .map_err(|err| match err {
                LedgerError::NotFound(_) => BillingError::AccountNotFound(account),
                other => other.into(),
            })
    }
}
