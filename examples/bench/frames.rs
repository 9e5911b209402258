//! Reading just enough of a server frame: the generator must not spend its
//! core parsing JSON it does not need.

/// The value of the string field `"name":"…"` in `frame`, if present and unescaped.
pub fn string_field<'a>(frame: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("\"{name}\":\"");
    let start = frame.find(&key)? + key.len();
    let len = frame[start..].find('"')?;
    Some(&frame[start..start + len])
}

/// Whether `frame` has `"type":"<kind>"`, wherever the field sits.
pub fn is_type(frame: &str, kind: &str) -> bool {
    string_field(frame, "type") == Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fields_in_any_order() {
        let go_style = r#"{"conv":"dm:a:b","id":"7-3","seq":1,"ts":2,"type":"ack"}"#;
        assert!(is_type(go_style, "ack"));
        assert_eq!(string_field(go_style, "id"), Some("7-3"));
        assert_eq!(string_field(go_style, "nope"), None);
    }
}
