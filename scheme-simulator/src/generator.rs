//! Random inbound payments that look like real ones, with chosen ratios of the cases the bank must handle.

use events::payments::Party;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::SchemePayment;

const FIRST_NAMES: &[&str] = &[
    "OLIVER", "AMELIA", "GEORGE", "ISLA", "HARRY", "AVA", "NOAH", "MIA", "JACK", "GRACE", "LEO",
    "FREYA", "ARTHUR", "LILY", "MUHAMMAD", "EMILY", "OSCAR", "SOPHIA", "CHARLIE", "POPPY", "PRIYA",
    "TOMASZ", "SIOBHAN", "RHYS",
];
const SURNAMES: &[&str] = &[
    "SMITH", "JONES", "WILLIAMS", "TAYLOR", "BROWN", "DAVIES", "EVANS", "WILSON", "THOMAS",
    "JOHNSON", "ROBERTS", "WALKER", "WRIGHT", "PATEL", "KHAN", "MURPHY", "OKAFOR", "NOWAK",
    "CAMPBELL", "HUGHES",
];
const COMPANIES: &[&str] = &[
    "ACME PAYROLL LTD",
    "NORTHWIND PLC",
    "HMRC",
    "DWP PENSIONS",
    "THAMES WATER",
    "OCTOPUS ENERGY",
    "TESCO STORES",
];
const REFERENCES: &[&str] = &[
    "SALARY", "PENSION", "REFUND", "INVOICE", "RENT", "EXPENSES", "DIVIDEND", "GIFT",
];

/// The accounts and names the generator draws from.
#[derive(Debug, Clone, Default)]
pub struct Population {
    /// (sort code, account number, name) of open accounts.
    pub open_accounts: Vec<(String, String, String)>,
    pub closed_accounts: Vec<(String, String, String)>,
    pub sanctioned_names: Vec<String>,
}

/// How many of each case, as ratios of the total (the rest are ordinary payments to open accounts).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Mix {
    pub sanctioned: f64,
    pub invalid: f64,
    pub unknown_account: f64,
    pub closed_account: f64,
}

/// The case a generated payment was made to exercise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Case {
    Ordinary,
    Sanctioned,
    Invalid,
    UnknownAccount,
    ClosedAccount,
}

fn person(rng: &mut impl Rng) -> String {
    let first = FIRST_NAMES.choose(rng).copied().unwrap_or("ALEX");
    let last = SURNAMES.choose(rng).copied().unwrap_or("SMITH");
    let name = format!("{first} {last}");
    name.chars().take(events::bacs::MAX_NAME_LEN).collect()
}

fn digits(rng: &mut impl Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

/// A payer at another bank.
fn payer(rng: &mut impl Rng) -> Party {
    let name = if rng.gen_bool(0.4) {
        COMPANIES.choose(rng).copied().unwrap_or("ACME").to_owned()
    } else {
        person(rng)
    };
    Party {
        name,
        sort_code: digits(rng, 6),
        account_number: digits(rng, 8),
    }
}

/// Amounts skewed small, as real payments are: mostly pounds to hundreds, sometimes thousands.
fn amount(rng: &mut impl Rng) -> i64 {
    let scale = [100, 1_000, 10_000, 100_000, 500_000];
    let weights = [10, 40, 30, 15, 5];
    let total: u32 = weights.iter().sum();
    let mut pick = rng.gen_range(0..total);
    for (s, w) in scale.iter().zip(weights) {
        if pick < w {
            return rng.gen_range(1..=*s);
        }
        pick -= w;
    }
    rng.gen_range(1..=100)
}

fn pick_case(rng: &mut impl Rng, mix: Mix, population: &Population) -> Case {
    let roll: f64 = rng.gen();
    let mut edge = 0.0;
    for (ratio, case, possible) in [
        (
            mix.sanctioned,
            Case::Sanctioned,
            !population.sanctioned_names.is_empty(),
        ),
        (mix.invalid, Case::Invalid, true),
        (mix.unknown_account, Case::UnknownAccount, true),
        (
            mix.closed_account,
            Case::ClosedAccount,
            !population.closed_accounts.is_empty(),
        ),
    ] {
        edge += ratio;
        if roll < edge && possible {
            return case;
        }
    }
    if population.open_accounts.is_empty() {
        Case::UnknownAccount
    } else {
        Case::Ordinary
    }
}

/// One random payment and the case it exercises. `sequence` makes the scheme transaction id unique.
pub fn payment(
    rng: &mut impl Rng,
    mix: Mix,
    population: &Population,
    sequence: u64,
) -> (SchemePayment, Case) {
    let case = pick_case(rng, mix, population);
    let mut payer = payer(rng);
    let reference = format!(
        "{} {}",
        REFERENCES.choose(rng).copied().unwrap_or("PAYMENT"),
        digits(rng, 4)
    );
    let beneficiary = match case {
        Case::Ordinary | Case::Sanctioned | Case::Invalid => {
            let (sort_code, account_number, name) = population
                .open_accounts
                .choose(rng)
                .cloned()
                .unwrap_or_else(|| (digits(rng, 6), digits(rng, 8), person(rng)));
            Party {
                name,
                sort_code,
                account_number,
            }
        }
        Case::ClosedAccount => {
            let (sort_code, account_number, name) = population
                .closed_accounts
                .choose(rng)
                .cloned()
                .unwrap_or_default();
            Party {
                name,
                sort_code,
                account_number,
            }
        }
        Case::UnknownAccount => Party {
            name: person(rng),
            sort_code: digits(rng, 6),
            account_number: digits(rng, 8),
        },
    };
    let mut payment = SchemePayment {
        scheme_transaction_id: format!("BACS-{}-{sequence:010}", uuid::Uuid::new_v4().simple()),
        payer: payer.clone(),
        beneficiary,
        amount: amount(rng),
        reference,
    };
    match case {
        Case::Sanctioned => {
            payer.name = population
                .sanctioned_names
                .choose(rng)
                .cloned()
                .unwrap_or_default();
            payment.payer = payer;
        }
        Case::Invalid => match rng.gen_range(0..3) {
            0 => payment.beneficiary.sort_code = digits(rng, 5),
            1 => payment.amount = 0,
            _ => payment.reference = "PAY_ME_NOW!".to_owned(),
        },
        _ => {}
    }
    (payment, case)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_mix_of_cases_follows_the_ratios() {
        let population = Population {
            open_accounts: vec![("123456".into(), "12345678".into(), "ADA LOVELACE".into())],
            closed_accounts: vec![("123456".into(), "87654321".into(), "OLD ACCOUNT".into())],
            sanctioned_names: vec!["VLADIMIR PETROV".into()],
        };
        let mix = Mix {
            sanctioned: 0.1,
            invalid: 0.1,
            unknown_account: 0.1,
            closed_account: 0.1,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut counts = std::collections::HashMap::new();
        let n = 10_000;
        for i in 0..n {
            let (payment, case) = payment(&mut rng, mix, &population, i);
            *counts.entry(case).or_insert(0) += 1;
            if case == Case::Ordinary {
                assert_eq!(payment.beneficiary.account_number, "12345678");
                assert!(payment.amount > 0);
            }
        }
        for case in [
            Case::Sanctioned,
            Case::Invalid,
            Case::UnknownAccount,
            Case::ClosedAccount,
        ] {
            let share = f64::from(counts[&case]) / n as f64;
            assert!((share - 0.1).abs() < 0.02, "{case:?}: {share}");
        }
    }
}
