//! The ledger's stored vocabularies as enums: entry kinds, lot sources and hold statuses. Each
//! is text in the database; unknown text read back is a bug, reported by the store.

use crate::vocab::text_enum;

text_enum!(
    /// Why a ledger entry changed a balance (`credit_ledger.kind`).
    pub(crate) EntryKind {
        Purchase => "purchase",
        Grant => "grant",
        Trial => "trial",
        Consumption => "consumption",
        Refund => "refund",
        Dispute => "dispute",
        Expiry => "expiry",
        Import => "import",
    }
);

text_enum!(
    /// Where a lot of credits came from (`credit_lots.source`).
    pub(crate) LotSource {
        Purchase => "purchase",
        Grant => "grant",
        Trial => "trial",
        Import => "import",
    }
);

text_enum!(
    /// Where a hold is in its life (`credit_holds.status`).
    pub(crate) HoldStatus {
        Active => "active",
        Captured => "captured",
        Released => "released",
        Expired => "expired",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_through_its_text() {
        for kind in EntryKind::ALL {
            assert_eq!(EntryKind::parse(kind.as_str()), Some(*kind));
        }
        for source in LotSource::ALL {
            assert_eq!(LotSource::parse(source.as_str()), Some(*source));
        }
        for status in HoldStatus::ALL {
            assert_eq!(HoldStatus::parse(status.as_str()), Some(*status));
        }
        assert_eq!(EntryKind::parse("processing"), None);
    }
}
