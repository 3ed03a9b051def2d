//! Accounts brought over from another system: opening one with its balance, comparing a stored
//! account with what the import says, and (adopting) moving it there. Pure, like the rest of
//! the book.
//!
//! - An imported account opens with one `import` entry of its balance (0 for an empty one) and,
//!   for a positive balance, one lot (`source = import`, with the import's expiry).
//! - A stored account is compared as callers see it: the balance without credits past their
//!   expiry, the email, the trial state.
//! - Adopting records the balance difference as one `import` entry: a positive one is a credit
//!   (a lot, paying debt first), a negative one takes free credits in burn order and the rest
//!   becomes debt, as a clawback does; then the email and trial state follow the import.

use chrono::{DateTime, Utc};

use super::{Book, Credit, LotMove, LotTerms, LotValue, Metadata, Posted, PostingError};
use crate::ledger::kinds::{EntryKind, LotSource};

/// The reference of an imported account's opening entry and lot.
pub(crate) const OPENING_REFERENCE: &str = "opening-balance";

/// An account as the other system had it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Imported {
    pub email: String,
    pub balance: i64,
    pub is_trial_user: bool,
    /// When the imported credits expire; `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Where a stored account and the import differ: `(stored, imported)` per field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Differences {
    pub balance: Option<(i64, i64)>,
    pub email: Option<(String, String)>,
    pub is_trial_user: Option<(bool, bool)>,
}

impl Differences {
    pub(crate) fn is_empty(&self) -> bool {
        self.balance.is_none() && self.email.is_none() && self.is_trial_user.is_none()
    }

    /// Credits an adoption moves: imported minus stored balance.
    pub(crate) fn delta(&self) -> i64 {
        self.balance.map_or(0, |(stored, imported)| imported - stored)
    }
}

impl Book {
    /// Gives an account opened in this batch its imported balance and trial state.
    pub(crate) fn open_imported(
        &mut self,
        imported: &Imported,
        lot_id: String,
        now: DateTime<Utc>,
    ) -> Posted {
        self.account.is_trial_user = imported.is_trial_user;
        self.account_changed = true;
        if imported.balance > 0 {
            return self.credit(
                import_credit(imported, OPENING_REFERENCE, lot_id, Metadata::new()),
                now,
            );
        }
        let entry = self.append(
            EntryKind::Import,
            0,
            EntryKind::Import.as_str(),
            OPENING_REFERENCE,
            Metadata::new(),
            None,
            Vec::new(),
            now,
        );
        Posted {
            entry,
            lot_id: None,
            balance: self.account.balance,
        }
    }

    /// Brings the book to `now` and says how it differs from the import.
    pub(crate) fn compare(&mut self, imported: &Imported, now: DateTime<Utc>) -> Differences {
        self.settle(now);
        let stored = self.account.balance - self.dead(now);
        Differences {
            balance: (stored != imported.balance).then_some((stored, imported.balance)),
            email: (self.account.email != imported.email)
                .then(|| (self.account.email.clone(), imported.email.clone())),
            is_trial_user: (self.account.is_trial_user != imported.is_trial_user)
                .then_some((self.account.is_trial_user, imported.is_trial_user)),
        }
    }

    /// Moves the account to the import (the caller checked its email is free): the balance
    /// difference as one `import` entry under `reference`, then email and trial state.
    pub(crate) fn adopt(
        &mut self,
        imported: &Imported,
        differences: &Differences,
        reference: &str,
        lot_id: String,
        now: DateTime<Utc>,
    ) -> Result<Option<Posted>, PostingError> {
        self.settle(now);
        let delta = differences.delta();
        let metadata = differences
            .balance
            .map(|(stored, imported)| {
                Metadata::from([
                    ("stored_balance".to_owned(), stored.to_string()),
                    ("imported_balance".to_owned(), imported.to_string()),
                ])
            })
            .unwrap_or_default();
        let posted = if delta > 0 {
            Some(self.credit(
                Credit {
                    credits: delta,
                    ..import_credit(imported, reference, lot_id, metadata)
                },
                now,
            ))
        } else if delta < 0 {
            let mut moves = Vec::new();
            let left = self.take_free(-delta, now, |_| true, &mut moves);
            if left > 0 {
                self.account.debt += left;
                moves.push(LotMove::debt(-left, 0, None));
            }
            let entry = self.append(
                EntryKind::Import,
                delta,
                EntryKind::Import.as_str(),
                reference,
                metadata,
                None,
                moves,
                now,
            );
            Some(Posted {
                entry,
                lot_id: None,
                balance: self.account.balance,
            })
        } else {
            None
        };
        if differences.email.is_some() {
            self.change_email(&imported.email);
        }
        if self.account.is_trial_user != imported.is_trial_user {
            self.account.is_trial_user = imported.is_trial_user;
            self.account_changed = true;
        }
        Ok(posted)
    }
}

fn import_credit(imported: &Imported, reference: &str, lot_id: String, metadata: Metadata) -> Credit {
    Credit {
        credits: imported.balance,
        kind: EntryKind::Import,
        reason: EntryKind::Import.as_str().to_owned(),
        reference: reference.to_owned(),
        metadata,
        lot: LotTerms {
            id: lot_id,
            source: LotSource::Import,
            reference: reference.to_owned(),
            expires_at: imported.expires_at,
            value: LotValue::free(),
            rollover: None,
        },
        ends_trial: false,
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::ledger::book::{AccountState, Reservation};

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn account(id: &str) -> AccountState {
        AccountState::new(id, &format!("{id}@example.com"), true, now())
    }

    fn imported(balance: i64) -> Imported {
        Imported {
            email: "a@example.com".to_owned(),
            balance,
            is_trial_user: false,
            expires_at: None,
        }
    }

    fn invariant(book: &Book) {
        let lots: i64 = book.lots().iter().map(|l| l.remaining).sum();
        assert_eq!(
            book.account.balance,
            lots - book.account.debt,
            "balance = lots - debt"
        );
        let entries: i64 = book.entries.iter().map(|e| e.delta).sum();
        assert_eq!(
            book.account.balance, entries,
            "balance = entries (from an empty book)"
        );
    }

    #[test]
    fn an_imported_account_opens_with_one_import_entry_and_its_lot() {
        let mut book = Book::open(account("a"));
        let expires = now() + Duration::days(30);
        let posted = book.open_imported(
            &Imported {
                expires_at: Some(expires),
                ..imported(500)
            },
            "lot-1".to_owned(),
            now(),
        );
        assert_eq!(posted.balance, 500);
        assert!(!book.account.is_trial_user, "trial state from the import");
        assert_eq!(book.entries.len(), 1);
        assert_eq!(
            (
                book.entries[0].kind,
                book.entries[0].delta,
                book.entries[0].reference.as_str()
            ),
            (EntryKind::Import, 500, OPENING_REFERENCE)
        );
        let lot = &book.lots()[0];
        assert_eq!(
            (lot.source, lot.credits, lot.remaining, lot.expires_at),
            (LotSource::Import, 500, 500, Some(expires))
        );
        invariant(&book);
    }

    #[test]
    fn an_empty_imported_account_gets_a_zero_entry_and_no_lot() {
        let mut book = Book::open(account("a"));
        book.open_imported(&imported(0), "lot-1".to_owned(), now());
        assert_eq!(book.entries.len(), 1);
        assert_eq!(book.entries[0].delta, 0);
        assert!(book.lots().is_empty());
        invariant(&book);
    }

    #[test]
    fn an_account_as_imported_compares_equal_and_another_names_each_difference() {
        let mut book = Book::open(AccountState {
            email: "a@example.com".to_owned(),
            ..account("a")
        });
        book.open_imported(&imported(500), "lot-1".to_owned(), now());
        assert!(book.compare(&imported(500), now()).is_empty());
        let other = Imported {
            email: "b@example.com".to_owned(),
            is_trial_user: true,
            ..imported(300)
        };
        let differences = book.compare(&other, now());
        assert_eq!(differences.balance, Some((500, 300)));
        assert_eq!(
            differences.email,
            Some(("a@example.com".to_owned(), "b@example.com".to_owned()))
        );
        assert_eq!(differences.is_trial_user, Some((false, true)));
        assert_eq!(differences.delta(), -200);
    }

    #[test]
    fn credits_past_their_expiry_do_not_count_in_a_comparison() {
        let mut book = Book::open(AccountState {
            email: "a@example.com".to_owned(),
            ..account("a")
        });
        let soon = Imported {
            expires_at: Some(now() + Duration::days(1)),
            ..imported(500)
        };
        book.open_imported(&soon, "lot-1".to_owned(), now());
        let later = now() + Duration::days(2);
        assert_eq!(book.compare(&imported(500), later).balance, Some((0, 500)));
        assert_eq!(book.entries.last().map(|e| e.kind), Some(EntryKind::Expiry));
    }

    #[test]
    fn adopting_a_higher_balance_credits_the_difference_paying_debt_first() {
        let mut book = Book::open(account("a"));
        book.account.debt = 100;
        book.account.balance = -100;
        let target = imported(400);
        let differences = book.compare(&target, now());
        assert_eq!(differences.delta(), 500);
        let posted = book
            .adopt(&target, &differences, "adopt:1", "lot-2".to_owned(), now())
            .expect("adopt");
        assert_eq!(posted.map(|p| p.balance), Some(400));
        assert_eq!(book.account.debt, 0);
        assert_eq!(book.lots()[0].remaining, 400);
        assert_eq!(book.lots()[0].source, LotSource::Import);
        let entry = book.entries.last().expect("entry");
        assert_eq!((entry.kind, entry.delta), (EntryKind::Import, 500));
        assert_eq!(
            entry.metadata.get("stored_balance").map(String::as_str),
            Some("-100")
        );
        assert_eq!(book.account.email, "a@example.com");
        assert!(!book.account.is_trial_user);
    }

    #[test]
    fn adopting_a_lower_balance_burns_in_order_and_what_holds_keep_becomes_debt() {
        let mut book = Book::open(AccountState {
            email: "a@example.com".to_owned(),
            ..account("a")
        });
        book.open_imported(&imported(300), "never".to_owned(), now());
        let soon = Imported {
            expires_at: Some(now() + Duration::days(1)),
            ..imported(200)
        };
        book.credit(
            import_credit(&soon, "adopt:0", "soon".to_owned(), Metadata::new()),
            now(),
        );
        book.reserve(
            Reservation {
                hold_id: "h".to_owned(),
                credits: 250,
                expires_at: now() + Duration::hours(1),
                reason: "usage".to_owned(),
                metadata: Metadata::new(),
            },
            now(),
        )
        .expect("reserve");
        // 500 stored, 250 of them held: going to 100 takes the 250 free, the rest is debt.
        let target = imported(100);
        let differences = book.compare(&target, now());
        book.adopt(&target, &differences, "adopt:1", "unused".to_owned(), now())
            .expect("adopt");
        assert_eq!(book.account.balance, 100);
        assert_eq!(book.account.debt, 150);
        assert!(book.available(now()) <= 0, "nothing free beyond the hold");
        let lots: i64 = book.lots().iter().map(|l| l.remaining).sum();
        assert_eq!(lots - book.account.debt, 100);
        assert!(book.lots().iter().all(|l| l.remaining == l.held));
    }

    #[test]
    fn adopting_only_an_email_and_trial_state_writes_no_entry() {
        let mut book = Book::open(account("a"));
        book.open_imported(
            &Imported {
                email: "a@example.com".to_owned(),
                ..imported(0)
            },
            "lot".to_owned(),
            now(),
        );
        let entries = book.entries.len();
        let target = Imported {
            email: "new@example.com".to_owned(),
            is_trial_user: true,
            ..imported(0)
        };
        let differences = book.compare(&target, now());
        assert_eq!(
            book.adopt(&target, &differences, "adopt:1", "lot".to_owned(), now()),
            Ok(None)
        );
        assert_eq!(book.entries.len(), entries);
        assert_eq!(book.account.email, "new@example.com");
        assert!(book.account.is_trial_user);
        assert!(
            book.compare(&target, now()).is_empty(),
            "adopting twice changes nothing"
        );
    }
}
