//! UpdateAccountSettings: the account owner's balance alert threshold, overdraft limit and
//! auto top-up. Settings are values, so a repeat changes nothing and needs no key. A change
//! writes `settings.changed`; turning auto top-up on while the available credits are already
//! below its threshold starts a top-up at once.

use serde_json::json;

use super::{Command, Context, EntryIds, LockSet, Reply, Step};
use crate::ledger::{
    book::{AccountSettings, AutoTopUp},
    error::LedgerError,
    kinds::EventType,
    types::{AccountRef, InvalidInput},
};

/// The largest threshold, limit or overdraft a caller may set.
const MAX_CREDITS: i64 = 1_000_000_000_000;

/// What to change; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SettingsChange {
    /// 0 turns balance alerts off for the account.
    pub low_balance_threshold: Option<i64>,
    pub overdraft_limit: Option<i64>,
    /// Replaces the whole auto top-up setting.
    pub auto_top_up: Option<AutoTopUpChange>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AutoTopUpChange {
    pub enabled: bool,
    pub threshold: i64,
    /// Checked against the catalog by billing before the command is sent.
    pub pack_id: String,
    pub monthly_limit: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct UpdateSettings {
    pub account: AccountRef,
    pub change: SettingsChange,
}

/// The account's settings after the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SettingsView {
    pub account_id: String,
    pub settings: AccountSettings,
    pub changed: bool,
}

impl Reply for SettingsView {}

impl SettingsChange {
    fn check(&self) -> Result<(), InvalidInput> {
        let in_range = |field: &'static str, value: Option<i64>| match value {
            Some(v) if !(0..=MAX_CREDITS).contains(&v) => {
                Err(InvalidInput::new(field, "must be from 0 to 10^12"))
            }
            _ => Ok(()),
        };
        in_range("low_balance_threshold", self.low_balance_threshold)?;
        in_range("overdraft_limit", self.overdraft_limit)?;
        if let Some(top_up) = &self.auto_top_up {
            in_range("auto_top_up.threshold", Some(top_up.threshold))?;
            in_range("auto_top_up.monthly_limit", Some(top_up.monthly_limit))?;
            if top_up.enabled {
                if top_up.threshold == 0 {
                    return Err(InvalidInput::new("auto_top_up.threshold", "must be positive"));
                }
                if top_up.monthly_limit == 0 {
                    return Err(InvalidInput::new("auto_top_up.monthly_limit", "must be positive"));
                }
                if top_up.pack_id.trim().is_empty() {
                    return Err(InvalidInput::new("auto_top_up.pack_id", "must name a pack"));
                }
            }
        }
        Ok(())
    }
}

impl Command for UpdateSettings {
    type Reply = SettingsView;
    type Draft = SettingsView;
    const NAME: &'static str = "update_settings";

    fn lock(&self, set: &mut LockSet) {
        set.account(&self.account);
    }

    fn apply(&self, cx: &mut Context<'_>) -> Result<Step<SettingsView>, LedgerError> {
        self.change.check()?;
        let account = cx.account(&self.account)?;
        let now = cx.now();
        let book = cx.book(&account)?;
        let change = self.change.clone();
        if change.auto_top_up.as_ref().is_some_and(|t| t.enabled)
            && book.account.settings.payment_method_id.is_none()
        {
            return Err(LedgerError::FailedPrecondition(
                "auto top-up needs a saved payment method: complete a PurchaseCredits with \
                 save_payment_method first"
                    .to_owned(),
            ));
        }
        let was_running = book.account.settings.auto_top_up.running().is_some();
        let before = book.account.settings.clone();
        book.change_settings(|s| {
            if let Some(threshold) = change.low_balance_threshold {
                s.low_balance_threshold = Some(threshold);
            }
            if let Some(limit) = change.overdraft_limit {
                s.overdraft_limit = limit;
            }
            if let Some(top_up) = change.auto_top_up {
                s.auto_top_up = AutoTopUp {
                    enabled: top_up.enabled,
                    threshold: top_up.threshold,
                    pack_id: (!top_up.pack_id.is_empty()).then_some(top_up.pack_id),
                    monthly_limit: top_up.monthly_limit,
                    // Setting it again is the owner's answer to a pause.
                    paused: None,
                };
            }
        });
        let settings = book.account.settings.clone();
        let changed = settings != before;
        if changed {
            let started = !was_running && settings.auto_top_up.running().is_some();
            let payload = json!({
                "low_balance_threshold": settings.low_balance_threshold,
                "overdraft_limit": settings.overdraft_limit,
                "auto_top_up": {
                    "enabled": settings.auto_top_up.enabled,
                    "threshold": settings.auto_top_up.threshold,
                    "pack_id": settings.auto_top_up.pack_id,
                    "monthly_limit": settings.auto_top_up.monthly_limit,
                },
                "auto_top_up_started": started,
            });
            book.settle(now);
            book.signal(EventType::SettingsChanged, payload, now);
        }
        Ok(Step::Draft(SettingsView {
            account_id: account,
            settings,
            changed,
        }))
    }

    fn answer(draft: SettingsView, _: &EntryIds) -> Result<SettingsView, LedgerError> {
        Ok(draft)
    }
}
