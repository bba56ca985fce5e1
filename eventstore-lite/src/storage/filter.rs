//! Server-side filters for `$all` reads and subscriptions: on stream name or event type, by regular expression
//! (look-around included, hence `fancy-regex`) or by prefixes.

use fancy_regex::Regex;

use super::StoredEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterTarget {
    StreamName,
    EventType,
}

#[derive(Debug, Clone)]
enum Matcher {
    Regex(Regex),
    Prefixes(Vec<String>),
}

/// A compiled filter. A non-empty regex wins over prefixes, as in EventStoreDB.
#[derive(Debug, Clone)]
pub struct EventFilter {
    target: FilterTarget,
    matcher: Matcher,
}

impl EventFilter {
    pub fn new(
        target: FilterTarget,
        regex: &str,
        prefixes: Vec<String>,
    ) -> Result<Self, fancy_regex::Error> {
        let matcher = if regex.is_empty() {
            Matcher::Prefixes(prefixes)
        } else {
            Matcher::Regex(Regex::new(regex)?)
        };
        Ok(Self { target, matcher })
    }

    pub fn matches(&self, event: &StoredEvent) -> bool {
        let subject = match self.target {
            FilterTarget::StreamName => event.stream.as_str(),
            FilterTarget::EventType => event.event_type.as_str(),
        };
        match &self.matcher {
            // A regex that cannot decide (backtrack limit) does not match.
            Matcher::Regex(re) => re.is_match(subject).unwrap_or(false),
            Matcher::Prefixes(prefixes) => {
                prefixes.is_empty() || prefixes.iter().any(|p| subject.starts_with(p.as_str()))
            }
        }
    }
}
