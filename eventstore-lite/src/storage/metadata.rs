//! Stream metadata as stored in `$$<stream>`: the keys the store acts on (`$maxCount`, `$maxAge`, `$tb`, `$acl`).
//! Unknown keys stay in the stored JSON untouched; only these are parsed.

use serde_json::Value;

/// `$tb` of a soft-deleted stream.
pub const SOFT_DELETED_TB: u64 = i64::MAX as u64;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamMetadata {
    pub max_count: Option<u64>,
    /// Seconds.
    pub max_age: Option<u64>,
    pub truncate_before: Option<u64>,
    pub acl: Option<Acl>,
}

/// `$acl`: roles or users allowed per operation. `None` = the default rules apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    pub read: Option<Vec<String>>,
    pub write: Option<Vec<String>>,
    pub delete: Option<Vec<String>>,
    pub meta_read: Option<Vec<String>>,
    pub meta_write: Option<Vec<String>>,
}

impl StreamMetadata {
    /// Parses the JSON body of a `$metadata` event. Invalid JSON yields empty metadata, as the keys cannot be
    /// honoured; the event itself is still stored as written.
    pub fn parse(data: &[u8]) -> Self {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(data) else {
            return Self::default();
        };
        let number = |key: &str| map.get(key).and_then(as_u64);
        Self {
            max_count: number("$maxCount"),
            max_age: number("$maxAge"),
            truncate_before: number("$tb"),
            acl: map.get("$acl").and_then(Value::as_object).map(|acl| Acl {
                read: roles(acl.get("$r")),
                write: roles(acl.get("$w")),
                delete: roles(acl.get("$d")),
                meta_read: roles(acl.get("$mr")),
                meta_write: roles(acl.get("$mw")),
            }),
        }
    }

    pub fn is_soft_deleted(&self) -> bool {
        self.truncate_before == Some(SOFT_DELETED_TB)
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_i64().map(|n| n.max(0) as u64))
        .or_else(|| v.as_f64().map(|f| f.max(0.0) as u64))
}

fn roles(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_keys_and_ignores_the_rest() {
        let meta = StreamMetadata::parse(br#"{"$maxCount":3,"$maxAge":60,"$tb":2,"$acl":{"$r":"$all","$w":["ops","bob"]},"x":1}"#);
        assert_eq!(meta.max_count, Some(3));
        assert_eq!(meta.max_age, Some(60));
        assert_eq!(meta.truncate_before, Some(2));
        let acl = meta.acl.expect("acl");
        assert_eq!(acl.read, Some(vec!["$all".to_owned()]));
        assert_eq!(acl.write, Some(vec!["ops".to_owned(), "bob".to_owned()]));
        assert!(StreamMetadata::parse(br#"{"$tb":9223372036854775807}"#).is_soft_deleted());
        assert_eq!(
            StreamMetadata::parse(b"not json"),
            StreamMetadata::default()
        );
    }
}
