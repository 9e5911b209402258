//! Layered configuration: a host puts its flags over a file over its defaults.

use serde_json::{Map, Value};

use crate::error::Error;

/// `overlay` laid over `base`, both JSON objects, as a JSON Merge Patch
/// (RFC 7386): objects merge key by key, any other value (arrays included)
/// replaces the one below it, and `null` removes the key. The result is not
/// validated; [`crate::Config::from_json`] does that.
pub fn merge_json(base: &str, overlay: &str) -> Result<String, Error> {
    let object = |text: &str, which: &str| -> Result<Map<String, Value>, Error> {
        match serde_json::from_str(text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(Error::InvalidConfig(format!("{which}: expected a JSON object"))),
            Err(e) => Err(Error::InvalidConfig(format!("{which}: {e}"))),
        }
    };
    let mut merged = object(base, "base")?;
    merge_into(&mut merged, object(overlay, "overlay")?);
    Ok(Value::Object(merged).to_string())
}

fn merge_into(base: &mut Map<String, Value>, overlay: Map<String, Value>) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (_, Value::Null) => {
                base.remove(&key);
            }
            (Some(Value::Object(below)), Value::Object(above)) => merge_into(below, above),
            (_, Value::Object(above)) => {
                // Nothing to merge into below: the patch applies to an empty
                // object, so its own nulls, at any depth, still mean "absent".
                let mut fresh = Map::new();
                merge_into(&mut fresh, above);
                base.insert(key, Value::Object(fresh));
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::merge_json;

    #[test]
    fn objects_merge_key_by_key_and_other_values_replace() {
        let merged = merge_json(
            r#"{"listen":"0.0.0.0:80","limits":{"max_watches":5,"rate":9},"host_ids":["a","b"]}"#,
            r#"{"limits":{"rate":1,"max_watches":null},"host_ids":["c"],"workers":2}"#,
        )
        .unwrap();
        let merged: serde_json::Value = serde_json::from_str(&merged).unwrap();
        assert_eq!(
            merged,
            serde_json::json!({"listen":"0.0.0.0:80","limits":{"rate":1},"host_ids":["c"],"workers":2})
        );
    }

    #[test]
    fn nulls_inside_a_new_object_are_dropped() {
        let merged = merge_json("{}", r#"{"tls":{"cert_path":"c","key_path":null,"x":{"y":null}}}"#).unwrap();
        assert_eq!(merged, r#"{"tls":{"cert_path":"c","x":{}}}"#);
    }

    #[test]
    fn a_layer_that_is_not_an_object_is_named_in_the_error() {
        let err = merge_json("[]", "{}").unwrap_err().to_string();
        assert!(err.contains("base: expected a JSON object"), "{err}");
        let err = merge_json("{}", "{").unwrap_err().to_string();
        assert!(err.contains("overlay:"), "{err}");
    }
}
