//! `[[plan]]` tables of the packs file: subscription plans that grant `credits` each `interval`,
//! checked field by field like packs (the caller shares the id and price sets across both).

use std::{collections::HashSet, fmt, ops::Range};

use serde::Deserialize;
use toml::Spanned;

use super::file_error::PackFileError;

/// How often a plan bills and grants its allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Month,
    Year,
}

impl Interval {
    /// Stripe's and the database's spelling: `month` or `year`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Month => "month",
            Self::Year => "year",
        }
    }

    /// The stored spelling back; `None` for anything else.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "month" => Some(Self::Month),
            "year" => Some(Self::Year),
            _ => None,
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plan as the file declares it, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSpec {
    pub id: String,
    pub name: String,
    /// Credits granted each period.
    pub credits: i64,
    pub interval: Interval,
    /// Minor units of `currency`, charged each period.
    pub unit_amount: i64,
    pub currency: String,
    /// Unspent allowance carried into the next period, at most; 0: none.
    pub rollover_cap: i64,
    pub stripe_price_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlan {
    id: Spanned<String>,
    name: Spanned<String>,
    credits: Spanned<i64>,
    interval: Spanned<String>,
    unit_amount: Spanned<i64>,
    currency: Spanned<String>,
    #[serde(default)]
    rollover_cap: Option<Spanned<i64>>,
    #[serde(default)]
    stripe_price_id: Option<Spanned<String>>,
}

/// At most a trillion credits a period: sums over years of periods stay far from `i64::MAX`.
pub const MAX_PLAN_CREDITS: i64 = 1_000_000_000_000;
/// A rollover cap holds at most this many periods' allowance.
pub const MAX_ROLLOVER_PERIODS: i64 = 12;
/// Plan ids go into Stripe ids, lookup keys and idempotency keys, which have length limits.
const MAX_PLAN_ID_LEN: usize = 64;

/// Where the plan's errors point: the error for a field at a span.
pub(super) type Invalid<'a> = dyn Fn(Option<Range<usize>>, &str, String) -> PackFileError + 'a;

/// Checks one `[[plan]]`; `ids` and `price_ids` are shared with the packs.
// Long on purpose: one check per plan field, each with its own message.
pub(super) fn check_plan(
    raw: RawPlan,
    invalid: &Invalid<'_>,
    ids: &mut HashSet<String>,
    price_ids: &mut HashSet<String>,
) -> Result<PlanSpec, PackFileError> {
    let id = raw.id.get_ref().trim().to_owned();
    let slug = id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if id.is_empty() || id.len() > MAX_PLAN_ID_LEN || !slug {
        return Err(invalid(
            Some(raw.id.span()),
            "id",
            format!(
                "plan {id:?}: must be a slug of a-z, 0-9, - and _ of at most {MAX_PLAN_ID_LEN} characters"
            ),
        ));
    }
    let at = |field: &str, span: Range<usize>, reason: String| {
        invalid(Some(span), field, format!("plan {id:?}: {reason}"))
    };
    if !ids.insert(id.clone()) {
        return Err(at(
            "id",
            raw.id.span(),
            "duplicate id (pack and plan ids share one namespace)".into(),
        ));
    }
    let name = raw.name.get_ref().trim();
    if name.is_empty() {
        return Err(at("name", raw.name.span(), "must not be empty".into()));
    }
    let credits = *raw.credits.get_ref();
    if !(1..=MAX_PLAN_CREDITS).contains(&credits) {
        return Err(at(
            "credits",
            raw.credits.span(),
            format!("must be a whole number of credits per period from 1 to {MAX_PLAN_CREDITS}"),
        ));
    }
    if *raw.unit_amount.get_ref() <= 0 {
        return Err(at(
            "unit_amount",
            raw.unit_amount.span(),
            "must be a positive integer of minor units".into(),
        ));
    }
    let currency = raw.currency.get_ref().trim().to_ascii_lowercase();
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_lowercase()) {
        return Err(at(
            "currency",
            raw.currency.span(),
            "must be a 3-letter ISO 4217 code".into(),
        ));
    }
    let Some(interval) = Interval::parse(raw.interval.get_ref().trim()) else {
        return Err(at(
            "interval",
            raw.interval.span(),
            format!("must be \"month\" or \"year\", not {:?}", raw.interval.get_ref()),
        ));
    };
    let rollover_cap = match raw.rollover_cap {
        None => 0,
        Some(cap) => {
            let value = *cap.get_ref();
            // credits ≤ MAX_PLAN_CREDITS keeps this product in range; checked all the same.
            let most = credits.checked_mul(MAX_ROLLOVER_PERIODS);
            if value < 0 || most.is_none_or(|most| value > most) {
                return Err(at(
                    "rollover_cap",
                    cap.span(),
                    format!("must be from 0 to {MAX_ROLLOVER_PERIODS} periods' credits"),
                ));
            }
            value
        }
    };
    let stripe_price_id = match raw.stripe_price_id {
        None => None,
        Some(price) if price.get_ref().trim().is_empty() => None,
        Some(price) => {
            let value = price.get_ref().trim().to_owned();
            if !price_ids.insert(value.clone()) {
                return Err(at(
                    "stripe_price_id",
                    price.span(),
                    format!("duplicate price id {value:?}"),
                ));
            }
            Some(value)
        }
    };
    Ok(PlanSpec {
        id,
        name: name.to_owned(),
        credits,
        interval,
        unit_amount: *raw.unit_amount.get_ref(),
        currency,
        rollover_cap,
        stripe_price_id,
    })
}

#[cfg(test)]
mod tests {
    use crate::catalog::{file::parse_catalog, file_error::PackFileError};

    use super::*;

    const GOOD: &str = r#"
[[pack]]
id = "starter"
name = "Starter"
credits = 100
unit_amount = 500
currency = "usd"

[[plan]]
id = "pro-monthly"
name = "Pro"
credits = 10000
interval = "month"
unit_amount = 2000
currency = "USD"
rollover_cap = 5000

[[plan]]
id = "pro-yearly"
name = "Pro (yearly)"
credits = 120000
interval = "year"
unit_amount = 20000
currency = "eur"
stripe_price_id = "price_pinned"
"#;

    fn error_of(text: &str) -> (usize, String, String) {
        match parse_catalog("p.toml", text) {
            Err(PackFileError::Invalid {
                line, field, reason, ..
            }) => (line, field, reason),
            other => panic!("expected an invalid-file error, got {other:?}"),
        }
    }

    #[test]
    fn plans_parse_beside_packs_with_defaults() {
        let file = parse_catalog("p.toml", GOOD).expect("valid");
        assert_eq!(file.packs.len(), 1);
        assert_eq!(
            file.plans[0],
            PlanSpec {
                id: "pro-monthly".into(),
                name: "Pro".into(),
                credits: 10_000,
                interval: Interval::Month,
                unit_amount: 2000,
                currency: "usd".into(),
                rollover_cap: 5000,
                stripe_price_id: None,
            }
        );
        assert_eq!(file.plans[1].interval, Interval::Year);
        assert_eq!(file.plans[1].rollover_cap, 0, "rollover_cap defaults to 0");
        assert_eq!(file.plans[1].stripe_price_id.as_deref(), Some("price_pinned"));
    }

    #[test]
    fn a_file_without_plans_has_none() {
        let packs_only = &GOOD[..GOOD.find("[[plan]]").expect("a plan")];
        let file = parse_catalog("p.toml", packs_only).expect("valid");
        assert_eq!((file.packs.len(), file.plans.len()), (1, 0));
    }

    #[test]
    fn plan_errors_name_line_field_and_plan() {
        let (line, field, reason) = error_of(&GOOD.replace("interval = \"month\"", "interval = \"week\""));
        assert_eq!((line, field.as_str()), (13, "interval"), "{reason}");
        let (line, field, reason) = error_of(&GOOD.replace("credits = 10000", "credits = 0"));
        assert_eq!((line, field.as_str()), (12, "credits"));
        assert!(reason.contains("\"pro-monthly\""), "{reason}");
        let (_, field, _) = error_of(&GOOD.replace("unit_amount = 2000", "unit_amount = -1"));
        assert_eq!(field, "unit_amount");
        let (_, field, _) = error_of(&GOOD.replace("currency = \"USD\"", "currency = \"US\""));
        assert_eq!(field, "currency");
        let (_, field, _) = error_of(&GOOD.replace("rollover_cap = 5000", "rollover_cap = -1"));
        assert_eq!(field, "rollover_cap");
        // At most twelve periods' allowance.
        let (_, field, _) = error_of(&GOOD.replace("rollover_cap = 5000", "rollover_cap = 120001"));
        assert_eq!(field, "rollover_cap");
        assert!(
            parse_catalog(
                "p.toml",
                &GOOD.replace("rollover_cap = 5000", "rollover_cap = 120000")
            )
            .is_ok()
        );
        let (_, field, _) = error_of(&GOOD.replace("credits = 10000", "credits = 1000000000001"));
        assert_eq!(field, "credits");
        let (_, field, _) = error_of(&GOOD.replace("name = \"Pro\"", "name = \" \""));
        assert_eq!(field, "name");
        let (_, field, _) = error_of(&GOOD.replace("rollover_cap = 5000", "rollover = 5000"));
        assert_eq!(field, "rollover");
    }

    #[test]
    fn ids_and_pinned_prices_are_unique_across_packs_and_plans() {
        let (line, field, reason) = error_of(&GOOD.replace("id = \"pro-monthly\"", "id = \"starter\""));
        assert_eq!((line, field.as_str()), (10, "id"), "{reason}");
        let (_, field, _) = error_of(&GOOD.replace("id = \"pro-yearly\"", "id = \"pro-monthly\""));
        assert_eq!(field, "id");
        let (_, field, _) = error_of(&GOOD.replace("id = \"pro-monthly\"", "id = \"Pro Monthly\""));
        assert_eq!(field, "id");
        let pinned_twice = GOOD.replace(
            "currency = \"usd\"\n\n[[plan]]",
            "currency = \"usd\"\nstripe_price_id = \"price_pinned\"\n\n[[plan]]",
        );
        let (_, field, _) = error_of(&pinned_twice);
        assert_eq!(field, "stripe_price_id");
    }
}
