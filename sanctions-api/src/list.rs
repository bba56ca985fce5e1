//! The sanctioned-names list: a mutable set kept as an immutable stream (`sanctionedNames`). Names are compared
//! after normalisation, so "Vladimir  Petrov" and "VLADIMIR PETROV" are the same entry.

use std::collections::BTreeMap;

use events::sanctions::{SanctionedNameAdded, SanctionedNameRemoved, SanctionedNamesEvent};
use serde::{Deserialize, Serialize};

use crate::matching::normalise;

/// The list as its events say it is; also the snapshot's shape.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanctionedNames {
    /// Normalised name → the name as it was added.
    names: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("a sanctioned name must have at least one letter or digit")]
    Empty,
    #[error("'{0}' is not on the list")]
    NotListed(String),
}

fn key(name: &str) -> String {
    normalise(name).join(" ")
}

impl SanctionedNames {
    pub fn apply(&mut self, event: &SanctionedNamesEvent) {
        match event {
            SanctionedNamesEvent::SanctionedNameAdded(e) => {
                self.names.insert(key(&e.name), e.name.clone());
            }
            SanctionedNamesEvent::SanctionedNameRemoved(e) => {
                self.names.remove(&key(&e.name));
            }
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.values().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Adding a name already listed changes nothing.
    pub fn add(&self, name: &str) -> Result<Vec<SanctionedNamesEvent>, ListError> {
        let normalised = key(name);
        if normalised.is_empty() {
            return Err(ListError::Empty);
        }
        if self.names.contains_key(&normalised) {
            return Ok(Vec::new());
        }
        Ok(vec![SanctionedNameAdded {
            name: name.trim().to_owned(),
        }
        .into()])
    }

    pub fn remove(&self, name: &str) -> Result<Vec<SanctionedNamesEvent>, ListError> {
        match self.names.get(&key(name)) {
            Some(listed) => Ok(vec![SanctionedNameRemoved {
                name: listed.clone(),
            }
            .into()]),
            None => Err(ListError::NotListed(name.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_added_once_and_removed_by_any_spelling_of_their_normal_form() {
        let mut list = SanctionedNames::default();
        let added = list.add("Vladimir Petrov").expect("added");
        added.iter().for_each(|e| list.apply(e));
        assert!(
            list.add("VLADIMIR  PETROV").expect("no error").is_empty(),
            "same name, nothing new"
        );
        assert_eq!(list.add("  ... "), Err(ListError::Empty));
        let removed = list.remove("vladimir petrov").expect("listed");
        removed.iter().for_each(|e| list.apply(e));
        assert!(list.is_empty());
        assert_eq!(
            list.remove("Nobody"),
            Err(ListError::NotListed("Nobody".into()))
        );
    }
}
