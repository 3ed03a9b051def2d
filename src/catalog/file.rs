//! Credit packs as declared in `CREDIT_PACKS_FILE` (TOML), checked field by field so that a bad
//! file stops start-up with the file, line and field named.

use std::{collections::HashSet, ops::Range, path::Path};

use serde::Deserialize;
use toml::Spanned;

pub use super::file_error::PackFileError;
use super::plan_file::{PlanSpec, RawPlan, check_plan};

/// A pack as the file declares it, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackSpec {
    pub id: String,
    pub name: String,
    pub credits: i64,
    pub unit_amount: i64,
    pub currency: String,
    pub stripe_price_id: Option<String>,
    /// A purchase's credits expire this many days after it completes; `None`: never.
    pub expires_after_days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackFile {
    #[serde(default)]
    pack: Vec<Spanned<RawPack>>,
    #[serde(default)]
    plan: Vec<Spanned<RawPlan>>,
}

/// Everything the packs file declares: packs, and subscription plans (none in older files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogSpec {
    pub packs: Vec<PackSpec>,
    pub plans: Vec<PlanSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPack {
    id: Spanned<String>,
    name: Spanned<String>,
    credits: Spanned<i64>,
    unit_amount: Spanned<i64>,
    currency: Spanned<String>,
    #[serde(default)]
    stripe_price_id: Option<Spanned<String>>,
    #[serde(default)]
    expires_after_days: Option<Spanned<i64>>,
}

/// At most a hundred years: enough for any offer, small enough for date arithmetic.
const MAX_EXPIRES_AFTER_DAYS: i64 = 36_500;

/// Reads and validates a packs file: its packs (its plans are checked too).
pub(crate) fn load_pack_file(path: &Path) -> Result<Vec<PackSpec>, PackFileError> {
    Ok(load_catalog_file(path)?.packs)
}

/// Reads and validates a packs file: packs and plans.
pub(crate) fn load_catalog_file(path: &Path) -> Result<CatalogSpec, PackFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| PackFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_catalog(&path.display().to_string(), &text)
}

/// Parses pack TOML and returns its packs; `path` only labels errors.
pub fn parse_packs(path: &str, text: &str) -> Result<Vec<PackSpec>, PackFileError> {
    Ok(parse_catalog(path, text)?.packs)
}

/// Parses pack TOML (packs and plans); `path` only labels errors.
// Long on purpose: one check per pack field, each with its own message.
pub fn parse_catalog(path: &str, text: &str) -> Result<CatalogSpec, PackFileError> {
    let invalid = |span: Option<Range<usize>>, field: &str, reason: String| PackFileError::Invalid {
        path: path.to_owned(),
        line: span.map_or(1, |s| line_of(text, s.start)),
        field: field.to_owned(),
        reason,
    };
    let file: PackFile = toml::from_str(text).map_err(|err| {
        let field = field_at(text, err.span())
            .or_else(|| err.message().split('`').nth(1).map(str::to_owned))
            .unwrap_or_else(|| "pack".to_owned());
        invalid(err.span(), &field, err.message().trim().to_owned())
    })?;
    if file.pack.is_empty() {
        return Err(invalid(None, "pack", "no [[pack]] entries".into()));
    }

    let mut ids = HashSet::new();
    let mut price_ids = HashSet::new();
    let mut packs = Vec::with_capacity(file.pack.len());
    for raw in file.pack {
        let raw = raw.into_inner();
        let id = raw.id.get_ref().trim();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(invalid(
                Some(raw.id.span()),
                "id",
                "must be a slug of a-z, 0-9, - and _".into(),
            ));
        }
        if !ids.insert(id.to_owned()) {
            return Err(invalid(
                Some(raw.id.span()),
                "id",
                format!("duplicate pack id {id:?}"),
            ));
        }
        let name = raw.name.get_ref().trim();
        if name.is_empty() {
            return Err(invalid(Some(raw.name.span()), "name", "must not be empty".into()));
        }
        if *raw.credits.get_ref() <= 0 {
            return Err(invalid(
                Some(raw.credits.span()),
                "credits",
                "must be a positive integer".into(),
            ));
        }
        if *raw.unit_amount.get_ref() <= 0 {
            return Err(invalid(
                Some(raw.unit_amount.span()),
                "unit_amount",
                "must be a positive integer of minor units".into(),
            ));
        }
        let currency = raw.currency.get_ref().trim().to_ascii_lowercase();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_lowercase()) {
            return Err(invalid(
                Some(raw.currency.span()),
                "currency",
                "must be a 3-letter ISO 4217 code".into(),
            ));
        }
        let stripe_price_id = match raw.stripe_price_id {
            None => None,
            Some(price) if price.get_ref().trim().is_empty() => None,
            Some(price) => {
                let value = price.get_ref().trim().to_owned();
                if !price_ids.insert(value.clone()) {
                    return Err(invalid(
                        Some(price.span()),
                        "stripe_price_id",
                        format!("duplicate price id {value:?}"),
                    ));
                }
                Some(value)
            }
        };
        let expires_after_days = match raw.expires_after_days {
            None => None,
            Some(days) => {
                let value = *days.get_ref();
                if !(1..=MAX_EXPIRES_AFTER_DAYS).contains(&value) {
                    return Err(invalid(
                        Some(days.span()),
                        "expires_after_days",
                        format!("must be a whole number of days from 1 to {MAX_EXPIRES_AFTER_DAYS}"),
                    ));
                }
                u32::try_from(value).ok()
            }
        };
        packs.push(PackSpec {
            id: id.to_owned(),
            name: name.to_owned(),
            credits: *raw.credits.get_ref(),
            unit_amount: *raw.unit_amount.get_ref(),
            currency,
            stripe_price_id,
            expires_after_days,
        });
    }
    let mut plans = Vec::with_capacity(file.plan.len());
    for raw in file.plan {
        plans.push(check_plan(raw.into_inner(), &invalid, &mut ids, &mut price_ids)?);
    }
    Ok(CatalogSpec { packs, plans })
}

/// The key of a `key = value` line that an error span points into.
fn field_at(text: &str, span: Option<Range<usize>>) -> Option<String> {
    let start = span?.start;
    let line_start = text.get(..start)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..)?.lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then(|| key.to_owned())
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |head| head.matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[pack]]
id = "starter"
name = "Starter"
credits = 100
unit_amount = 500
currency = "USD"

[[pack]]
id = "standard"
name = "Standard"
credits = 500
unit_amount = 1500
currency = "usd"
stripe_price_id = "price_123"
expires_after_days = 365
"#;

    #[test]
    fn a_good_file_parses() {
        let packs = parse_packs("packs.toml", GOOD).expect("valid");
        assert_eq!(packs.len(), 2);
        assert_eq!(packs[0].currency, "usd");
        assert_eq!(packs[0].stripe_price_id, None);
        assert_eq!(packs[1].stripe_price_id.as_deref(), Some("price_123"));
        assert_eq!(
            (packs[0].expires_after_days, packs[1].expires_after_days),
            (None, Some(365))
        );
    }

    fn error_of(text: &str) -> (usize, String) {
        match parse_packs("p.toml", text) {
            Err(PackFileError::Invalid { line, field, .. }) => (line, field),
            other => panic!("expected an invalid-file error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_line_and_field() {
        let bad = GOOD.replace("credits = 500", "credits = -5");
        assert_eq!(error_of(&bad), (12, "credits".into()));
        let bad = GOOD.replace("currency = \"usd\"", "currency = \"dollars\"");
        assert_eq!(error_of(&bad), (14, "currency".into()));
        let bad = GOOD.replace("unit_amount = 500", "unit_amount = \"five\"");
        assert_eq!(error_of(&bad), (6, "unit_amount".into()));
        let bad = GOOD.replace("id = \"standard\"", "id = \"starter\"");
        assert_eq!(error_of(&bad), (10, "id".into()));
        let bad = GOOD.replace("name = \"Starter\"\n", "");
        assert!(error_of(&bad).1.contains("name"), "{:?}", error_of(&bad));
        assert_eq!(error_of("").1, "pack");
        let bad = GOOD.replace("expires_after_days = 365", "expires_after_days = 0");
        assert_eq!(error_of(&bad), (16, "expires_after_days".into()));
    }
}
