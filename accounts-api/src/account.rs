//! The account aggregate: its state rebuilt from `account-…` events, and the decisions that produce new events.
//! Pure: no IO. Balances are in pence; the available balance counts the overdraft and subtracts reservations.

use std::collections::{HashSet, VecDeque};

use events::accounts::*;
use events::bacs::ReturnReason;
use events::{AccountId, Money, PaymentId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AccountStatus {
    Open,
    Blocked,
    Closed,
}

/// One line of the account's history, as the time machine and the transactions page show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    pub revision: u64,
    pub kind: String,
    /// Positive for credits, negative for debits.
    pub amount: Money,
    pub balance_after: Money,
    pub reference: String,
}

/// An account as its events say it is (at the revision last applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: Option<AccountId>,
    pub name: String,
    pub status: AccountStatus,
    pub balance: Money,
    pub overdraft_limit: Money,
    pub reserved: Money,
    /// Payments already credited or refused, so a redelivered payment is not posted twice.
    pub settled_payments: SettledPayments,
    pub recent_transactions: Vec<Transaction>,
    pub revision: Option<u64>,
}

/// Recent transactions kept in the state (the full list is the stream itself).
const RECENT_TRANSACTIONS: usize = 20;
/// Payment ids remembered for idempotency.
const REMEMBERED_PAYMENTS: usize = 10_000;

impl Default for Account {
    fn default() -> Self {
        Self {
            id: None,
            name: String::new(),
            status: AccountStatus::Open,
            balance: Money::ZERO,
            overdraft_limit: Money::ZERO,
            reserved: Money::ZERO,
            settled_payments: SettledPayments::default(),
            recent_transactions: Vec::new(),
            revision: None,
        }
    }
}

/// The newest payments an account settled, oldest first: a bounded memory for idempotency. Asking whether a
/// payment is among them takes a hash lookup and remembering one past the bound forgets the oldest, both in
/// constant time — as a list, each posting scanned and shifted up to [`REMEMBERED_PAYMENTS`] ids, a cost that
/// grew with the account's traffic. Serialised (in snapshots) as the list of ids, oldest first.
#[derive(Debug, Clone, Default)]
pub struct SettledPayments {
    order: VecDeque<PaymentId>,
    members: HashSet<PaymentId>,
}

impl SettledPayments {
    pub fn contains(&self, payment: &PaymentId) -> bool {
        self.members.contains(payment)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Remembers `payment` (once), forgetting the oldest while more than `bound` are remembered.
    fn remember(&mut self, payment: PaymentId, bound: usize) {
        if !self.members.insert(payment) {
            return;
        }
        self.order.push_back(payment);
        while self.order.len() > bound {
            if let Some(oldest) = self.order.pop_front() {
                self.members.remove(&oldest);
            }
        }
    }
}

impl PartialEq for SettledPayments {
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order
    }
}

impl Eq for SettledPayments {}

impl Serialize for SettledPayments {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(&self.order)
    }
}

impl<'de> Deserialize<'de> for SettledPayments {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut settled = SettledPayments::default();
        for payment in Vec::<PaymentId>::deserialize(deserializer)? {
            settled.remember(payment, usize::MAX);
        }
        Ok(settled)
    }
}

/// Why a command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("account {0} already exists")]
    AlreadyExists(AccountId),
    #[error("account does not exist")]
    NotFound,
    #[error("account is {0:?}")]
    NotOpen(AccountStatus),
    #[error("amount must be greater than zero")]
    NonPositiveAmount,
    #[error("insufficient funds: available {available}, requested {requested}")]
    InsufficientFunds { available: Money, requested: Money },
    #[error("account cannot be closed with a balance of {0}")]
    BalanceNotZero(Money),
    #[error("overdraft limit must not be negative")]
    NegativeOverdraft,
    #[error("invalid status change from {from:?} to {to:?}")]
    InvalidStatusChange {
        from: AccountStatus,
        to: AccountStatus,
    },
    #[error("amount overflows")]
    Overflow,
}

impl Account {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    /// Balance plus overdraft, less reservations.
    pub fn available(&self) -> Money {
        Money::from_pence(
            self.balance.pence() + self.overdraft_limit.pence() - self.reserved.pence(),
        )
    }

    /// Applies one event at `revision`.
    pub fn apply(&mut self, revision: u64, event: &AccountEvent) {
        self.revision = Some(revision);
        let record = |state: &mut Account, kind: &str, amount: i64, reference: &str| {
            state.recent_transactions.push(Transaction {
                revision,
                kind: kind.to_owned(),
                amount: Money::from_pence(amount),
                balance_after: state.balance,
                reference: reference.to_owned(),
            });
            if state.recent_transactions.len() > RECENT_TRANSACTIONS {
                state.recent_transactions.remove(0);
            }
        };
        match event {
            AccountEvent::AccountOpened(e) => {
                self.id = Some(e.account_id);
                self.name = e.name.clone();
                self.overdraft_limit = e.overdraft_limit;
                self.status = AccountStatus::Open;
            }
            AccountEvent::AccountBlocked(_) => self.status = AccountStatus::Blocked,
            AccountEvent::AccountUnblocked(_) => self.status = AccountStatus::Open,
            AccountEvent::AccountClosed(_) => self.status = AccountStatus::Closed,
            AccountEvent::OverdraftLimitChanged(e) => self.overdraft_limit = e.overdraft_limit,
            AccountEvent::FundsDeposited(e) => {
                self.balance = Money::from_pence(self.balance.pence() + e.amount.pence());
                record(self, "deposit", e.amount.pence(), &e.reference);
            }
            AccountEvent::FundsWithdrawn(e) => {
                self.balance = Money::from_pence(self.balance.pence() - e.amount.pence());
                record(self, "withdrawal", -e.amount.pence(), &e.reference);
            }
            AccountEvent::FundsCredited(e) => {
                self.balance = Money::from_pence(self.balance.pence() + e.amount.pence());
                self.remember(e.payment_id);
                record(self, "credit", e.amount.pence(), &e.reference);
            }
            AccountEvent::FundsDebited(e) => {
                self.balance = Money::from_pence(self.balance.pence() - e.amount.pence());
                record(self, "debit", -e.amount.pence(), &e.reference);
            }
            AccountEvent::FundsReserved(e) => {
                self.reserved = Money::from_pence(self.reserved.pence() + e.amount.pence());
            }
            AccountEvent::FundsReservationReleased(e) => {
                self.reserved = Money::from_pence(self.reserved.pence() - e.amount.pence());
                if e.settled {
                    self.balance = Money::from_pence(self.balance.pence() - e.amount.pence());
                    record(
                        self,
                        "payment",
                        -e.amount.pence(),
                        &e.payment_id.to_string(),
                    );
                }
            }
            AccountEvent::PaymentPostingRefused(e) => self.remember(e.payment_id),
        }
    }

    fn remember(&mut self, payment: PaymentId) {
        self.settled_payments.remember(payment, REMEMBERED_PAYMENTS);
    }

    fn require_open(&self) -> Result<(), AccountError> {
        if !self.exists() {
            return Err(AccountError::NotFound);
        }
        match self.status {
            AccountStatus::Open => Ok(()),
            other => Err(AccountError::NotOpen(other)),
        }
    }

    pub fn open(
        &self,
        id: AccountId,
        name: String,
        overdraft_limit: Money,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        if self.exists() {
            return Err(AccountError::AlreadyExists(id));
        }
        if overdraft_limit.is_negative() {
            return Err(AccountError::NegativeOverdraft);
        }
        Ok(vec![AccountOpened {
            account_id: id,
            name,
            overdraft_limit,
        }
        .into()])
    }

    pub fn deposit(
        &self,
        amount: Money,
        reference: String,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        self.require_open()?;
        if !amount.is_positive() {
            return Err(AccountError::NonPositiveAmount);
        }
        self.balance
            .checked_add(amount)
            .ok_or(AccountError::Overflow)?;
        Ok(vec![FundsDeposited { amount, reference }.into()])
    }

    pub fn withdraw(
        &self,
        amount: Money,
        reference: String,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        self.require_open()?;
        if !amount.is_positive() {
            return Err(AccountError::NonPositiveAmount);
        }
        if amount > self.available() {
            return Err(AccountError::InsufficientFunds {
                available: self.available(),
                requested: amount,
            });
        }
        Ok(vec![FundsWithdrawn { amount, reference }.into()])
    }

    pub fn change_status(
        &self,
        to: AccountStatus,
        reason: String,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        if !self.exists() {
            return Err(AccountError::NotFound);
        }
        let from = self.status;
        match (from, to) {
            (AccountStatus::Open, AccountStatus::Blocked) => {
                Ok(vec![AccountBlocked { reason }.into()])
            }
            (AccountStatus::Blocked, AccountStatus::Open) => {
                Ok(vec![AccountUnblocked { reason }.into()])
            }
            (AccountStatus::Open | AccountStatus::Blocked, AccountStatus::Closed) => {
                if self.balance != Money::ZERO || self.reserved != Money::ZERO {
                    return Err(AccountError::BalanceNotZero(self.balance));
                }
                Ok(vec![AccountClosed { reason }.into()])
            }
            (from, to) if from == to => Ok(Vec::new()),
            (from, to) => Err(AccountError::InvalidStatusChange { from, to }),
        }
    }

    pub fn change_overdraft(&self, limit: Money) -> Result<Vec<AccountEvent>, AccountError> {
        self.require_open()?;
        if limit.is_negative() {
            return Err(AccountError::NegativeOverdraft);
        }
        Ok(vec![OverdraftLimitChanged {
            overdraft_limit: limit,
        }
        .into()])
    }

    /// Posts an inbound payment, or refuses it with the Bacs reason it goes back with. A payment already
    /// credited or refused yields nothing (idempotent on redelivery).
    pub fn post_inbound_payment(
        &self,
        payment_id: PaymentId,
        amount: Money,
        payer_name: String,
        reference: String,
    ) -> Vec<AccountEvent> {
        if self.settled_payments.contains(&payment_id) {
            return Vec::new();
        }
        let refusal = match (self.exists(), self.status) {
            (false, _) => Some(ReturnReason::NoAccount),
            (true, AccountStatus::Closed) => Some(ReturnReason::AccountClosed),
            (true, AccountStatus::Blocked) => Some(ReturnReason::AccountTransferred),
            (true, AccountStatus::Open) => None,
        };
        match refusal {
            Some(reason) => vec![PaymentPostingRefused {
                payment_id,
                amount,
                reason,
            }
            .into()],
            None => vec![FundsCredited {
                payment_id,
                amount,
                payer_name,
                reference,
                transfer_id: None,
            }
            .into()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> AccountId {
        "12345612345678".parse().expect("valid id")
    }

    /// Given these events, when the command runs, then these events (or this error).
    fn given(events: Vec<AccountEvent>) -> Account {
        let mut account = Account::default();
        for (revision, event) in events.iter().enumerate() {
            account.apply(revision as u64, event);
        }
        account
    }

    fn opened(overdraft: i64) -> AccountEvent {
        AccountOpened {
            account_id: id(),
            name: "ADA LOVELACE".into(),
            overdraft_limit: Money::from_pence(overdraft),
        }
        .into()
    }

    fn deposited(pence: i64) -> AccountEvent {
        FundsDeposited {
            amount: Money::from_pence(pence),
            reference: "cash".into(),
        }
        .into()
    }

    #[test]
    fn withdrawals_may_use_the_overdraft_but_not_more() {
        let account = given(vec![opened(500), deposited(1_000)]);
        assert_eq!(account.available(), Money::from_pence(1_500));
        assert!(account
            .withdraw(Money::from_pence(1_500), "rent".into())
            .is_ok());
        assert_eq!(
            account.withdraw(Money::from_pence(1_501), "rent".into()),
            Err(AccountError::InsufficientFunds {
                available: Money::from_pence(1_500),
                requested: Money::from_pence(1_501)
            })
        );
        assert_eq!(
            account.withdraw(Money::ZERO, "x".into()),
            Err(AccountError::NonPositiveAmount)
        );
    }

    #[test]
    fn inbound_payments_are_refused_with_the_bacs_reason_and_posted_once() {
        let payment = PaymentId::new();
        let post = |account: &Account| {
            account.post_inbound_payment(
                payment,
                Money::from_pence(250),
                "BOB".into(),
                "INV1".into(),
            )
        };
        let refused = |reason| {
            vec![AccountEvent::from(PaymentPostingRefused {
                payment_id: payment,
                amount: Money::from_pence(250),
                reason,
            })]
        };
        assert_eq!(post(&Account::default()), refused(ReturnReason::NoAccount));
        let closed = given(vec![
            opened(0),
            AccountClosed {
                reason: "moved".into(),
            }
            .into(),
        ]);
        assert_eq!(post(&closed), refused(ReturnReason::AccountClosed));
        let blocked = given(vec![
            opened(0),
            AccountBlocked {
                reason: "fraud".into(),
            }
            .into(),
        ]);
        assert_eq!(post(&blocked), refused(ReturnReason::AccountTransferred));

        let open = given(vec![opened(0)]);
        let credited = post(&open);
        assert!(matches!(
            credited.as_slice(),
            [AccountEvent::FundsCredited(_)]
        ));
        let mut after = open.clone();
        after.apply(1, &credited[0]);
        assert_eq!(after.balance, Money::from_pence(250));
        assert!(
            post(&after).is_empty(),
            "a redelivered payment is not posted twice"
        );
    }

    #[test]
    fn closing_needs_a_zero_balance_and_status_changes_follow_the_rules() {
        let funded = given(vec![opened(0), deposited(10)]);
        assert_eq!(
            funded.change_status(AccountStatus::Closed, "bye".into()),
            Err(AccountError::BalanceNotZero(Money::from_pence(10)))
        );
        let empty = given(vec![opened(0)]);
        assert!(empty
            .change_status(AccountStatus::Closed, "bye".into())
            .is_ok());
        let closed = given(vec![
            opened(0),
            AccountClosed {
                reason: "bye".into(),
            }
            .into(),
        ]);
        assert!(matches!(
            closed.change_status(AccountStatus::Open, "back".into()),
            Err(AccountError::InvalidStatusChange { .. })
        ));
        assert_eq!(
            closed.deposit(Money::from_pence(1), "x".into()),
            Err(AccountError::NotOpen(AccountStatus::Closed))
        );
    }

    #[test]
    fn an_account_remembers_its_newest_settled_payments_and_snapshots_them_oldest_first() {
        let payments: Vec<PaymentId> = (0..5).map(|_| PaymentId::new()).collect();
        let mut settled = SettledPayments::default();
        for payment in &payments {
            settled.remember(*payment, 3);
        }
        settled.remember(payments[4], 3);
        assert_eq!(
            settled.len(),
            3,
            "bounded, and a payment is remembered once"
        );
        assert!(!settled.contains(&payments[0]) && !settled.contains(&payments[1]));
        assert!(payments[2..]
            .iter()
            .all(|payment| settled.contains(payment)));

        // Snapshots keep the list shape earlier versions wrote: a JSON array of ids, oldest first.
        let json = serde_json::to_value(&settled).expect("serialisable");
        assert_eq!(json, serde_json::json!(payments[2..]));
        let restored: SettledPayments = serde_json::from_value(json).expect("readable");
        assert_eq!(restored, settled);
        assert!(restored.contains(&payments[4]) && !restored.contains(&payments[1]));
        assert!(SettledPayments::default().is_empty());
    }
}
