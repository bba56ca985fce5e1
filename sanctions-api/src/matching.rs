//! Fuzzy name screening: names are normalised into tokens (upper case, Bacs punctuation and honorifics
//! dropped), then compared token by token with Jaro-Winkler. A screened name matches a sanctioned one when the
//! sanctioned name's tokens are, on average, found in the screened name at or above the threshold — so word
//! order, middle names and small spelling changes ("Jon Smyth" vs "John Smith") do not defeat the screen.

use events::sanctions::NameMatch;

/// Default similarity at or above which a payment is held.
pub const DEFAULT_THRESHOLD: f64 = 0.9;

const HONORIFICS: &[&str] = &[
    "MR", "MRS", "MS", "MISS", "DR", "SIR", "LADY", "LORD", "PROF", "REV",
];

/// Upper-case tokens, punctuation removed, honorifics and single-letter initials kept apart.
pub fn normalise(name: &str) -> Vec<String> {
    name.to_uppercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|token| !token.is_empty() && !HONORIFICS.contains(token))
        .map(str::to_owned)
        .collect()
}

/// Similarity of a screened name to a sanctioned name, in 0..=1.
pub fn similarity(screened: &str, sanctioned: &str) -> f64 {
    Normalised::new(screened).similarity(&Normalised::new(sanctioned))
}

/// A name's tokens and the tokens joined by spaces: normalised once however many names it is compared with.
struct Normalised {
    tokens: Vec<String>,
    whole: String,
}

impl Normalised {
    fn new(name: &str) -> Self {
        let tokens = normalise(name);
        let whole = tokens.join(" ");
        Self { tokens, whole }
    }

    /// Similarity of this (screened) name to a sanctioned one.
    fn similarity(&self, sanctioned: &Normalised) -> f64 {
        if self.tokens.is_empty() || sanctioned.tokens.is_empty() {
            return 0.0;
        }
        let whole = strsim::jaro_winkler(&self.whole, &sanctioned.whole);
        let per_token: f64 = sanctioned
            .tokens
            .iter()
            .map(|wanted| {
                self.tokens
                    .iter()
                    .map(|token| strsim::jaro_winkler(wanted, token))
                    .fold(0.0, f64::max)
            })
            .sum::<f64>()
            / sanctioned.tokens.len() as f64;
        whole.max(per_token)
    }
}

/// Every sanctioned name `screened` matches at or above `threshold`, best first.
pub fn screen<'a>(
    screened: &str,
    sanctioned: impl IntoIterator<Item = &'a str>,
    threshold: f64,
) -> Vec<NameMatch> {
    let screened = Normalised::new(screened);
    let mut matches: Vec<NameMatch> = sanctioned
        .into_iter()
        .filter_map(|name| {
            let score = screened.similarity(&Normalised::new(name));
            (score >= threshold).then(|| NameMatch {
                sanctioned_name: name.to_owned(),
                score,
            })
        })
        .collect();
    matches.sort_by(|a, b| b.score.total_cmp(&a.score));
    matches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_spellings_and_reordered_names_match_and_others_do_not() {
        let list = ["Vladimir Petrov", "Acme Shell Holdings"];
        for (name, hit) in [
            ("VLADIMIR PETROV", true),
            ("Mr Vladimir Petrov", true),
            ("Petrov, Vladimir", true),
            ("Vladimir Petrov", true),
            ("Wladimir Petrow", true),
            ("ACME SHELL HOLDINGS LTD", true),
            ("Ada Lovelace", false),
            ("Peter Vlad", false),
            ("", false),
        ] {
            let matches = screen(name, list, DEFAULT_THRESHOLD);
            assert_eq!(!matches.is_empty(), hit, "{name}: {matches:?}");
        }
        let exact = screen("vladimir petrov", list, DEFAULT_THRESHOLD);
        assert!(
            (exact[0].score - 1.0).abs() < 1e-9,
            "an exact name scores 1"
        );
    }
}
