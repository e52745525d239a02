//! Every reason billrun writes: why a row was rejected (SPEC §4 Rejects, §5 `rejects`) and
//! why a subscription is on a disconnection or reconnection list (§4 steps 2 and 7).

/// Why an input row was rejected (`rejects.reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    MissingRequired,
    InvalidValue,
    DuplicateKey,
    UnknownSubscription,
    UnknownService,
    UnknownWallet,
    CurrencyMismatch,
    LateUsage,
    ItemEnded,
    UnknownItem,
    NotPostRate,
    ExternalUsage,
    TerminatedSubscription,
    SourceMismatch,
    /// SPEC §9.1: a service's tier set breaks the tier rules (or a tier names a flat service).
    InvalidTiers,
    /// SPEC §9.1: a negotiated price on a tiered service.
    PricingMismatch,
    /// SPEC §9.1: the item's effective tax code has no rate at `as_of`.
    UnknownTaxCode,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingRequired => "MISSING_REQUIRED",
            Reason::InvalidValue => "INVALID_VALUE",
            Reason::DuplicateKey => "DUPLICATE_KEY",
            Reason::UnknownSubscription => "UNKNOWN_SUBSCRIPTION",
            Reason::UnknownService => "UNKNOWN_SERVICE",
            Reason::UnknownWallet => "UNKNOWN_WALLET",
            Reason::CurrencyMismatch => "CURRENCY_MISMATCH",
            Reason::LateUsage => "LATE_USAGE",
            Reason::ItemEnded => "ITEM_ENDED",
            Reason::UnknownItem => "UNKNOWN_ITEM",
            Reason::NotPostRate => "NOT_POST_RATE",
            Reason::ExternalUsage => "EXTERNAL_USAGE",
            Reason::TerminatedSubscription => "TERMINATED_SUBSCRIPTION",
            Reason::SourceMismatch => "SOURCE_MISMATCH",
            Reason::InvalidTiers => "INVALID_TIERS",
            Reason::PricingMismatch => "PRICING_MISMATCH",
            Reason::UnknownTaxCode => "UNKNOWN_TAX_CODE",
        }
    }
}

/// Why a subscription is on `disconnections` or `reconnections`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListReason {
    /// Step 7: the balance after the run's debits is at or below the disconnection threshold.
    BalanceAtOrBelowThreshold,
    /// Step 7: the pre-rate charges were not taken and the paid period has run out.
    PrepaidPeriodNotCovered,
    /// Step 7: a reconnection candidate whose charges were taken.
    BalanceAboveThreshold,
    /// Step 2: the store event that last changed the status, or the expiry check.
    ExternalPurchased,
    ExternalRenewed,
    ExternalRevived,
    ExternalExpired,
    ExternalRevoked,
}

impl ListReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ListReason::BalanceAtOrBelowThreshold => "BALANCE_AT_OR_BELOW_THRESHOLD",
            ListReason::PrepaidPeriodNotCovered => "PREPAID_PERIOD_NOT_COVERED",
            ListReason::BalanceAboveThreshold => "BALANCE_ABOVE_THRESHOLD",
            ListReason::ExternalPurchased => "EXTERNAL_PURCHASED",
            ListReason::ExternalRenewed => "EXTERNAL_RENEWED",
            ListReason::ExternalRevived => "EXTERNAL_REVIVED",
            ListReason::ExternalExpired => "EXTERNAL_EXPIRED",
            ListReason::ExternalRevoked => "EXTERNAL_REVOKED",
        }
    }
}

/// A wallet's class in `wallet_estimates` (§4 step 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EstimateClass {
    /// The balance is at or below the disconnection threshold.
    Depleted,
    /// Fewer than `low_balance_days` days remaining.
    Low,
    Ok,
}

impl EstimateClass {
    pub fn as_str(self) -> &'static str {
        match self {
            EstimateClass::Depleted => "DEPLETED",
            EstimateClass::Low => "LOW",
            EstimateClass::Ok => "OK",
        }
    }
}
