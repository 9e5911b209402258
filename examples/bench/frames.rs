//! Reading just enough of a server frame: the generator must not spend its
//! core parsing JSON it does not need. Frames are searched as bytes for the
//! few keys the scenarios use, with searchers built once.

use std::sync::LazyLock;

use memchr::memmem::Finder;

/// The frame types the generator acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `welcome`: the connection is authenticated.
    Welcome,
    /// `ack`: a send was stored.
    Ack,
    /// `msg`: a delivery.
    Msg,
    /// `ok`: a request such as `join` succeeded.
    Ok,
    /// `error`: a request failed.
    Error,
    /// Any other type, or none.
    Other,
}

const TYPE_FIRST: &[u8] = br#"{"type":""#;
static TYPE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(br#""type":""#));
static ID: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(br#""id":""#));
/// The send time in a room message's body, `{"t":<µs>,…}`.
static SEND_TIME: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(br#"{"t":"#));

/// The frame's type.
pub fn kind(frame: &[u8]) -> Kind {
    // imbed, Bun and Node write the type first; Go sorts map keys, so its
    // acks carry it last.
    let value = match frame.strip_prefix(TYPE_FIRST) {
        Some(rest) => rest,
        None => match TYPE.find(frame) {
            Some(at) => &frame[at + TYPE.needle().len()..],
            None => return Kind::Other,
        },
    };
    match value.get(..memchr::memchr(b'"', value).unwrap_or(0)) {
        Some(b"msg") => Kind::Msg,
        Some(b"ack") => Kind::Ack,
        Some(b"ok") => Kind::Ok,
        Some(b"error") => Kind::Error,
        Some(b"welcome") => Kind::Welcome,
        _ => Kind::Other,
    }
}

/// The string `id` of the frame, if present and unescaped.
pub fn id(frame: &[u8]) -> Option<&[u8]> {
    let value = &frame[ID.find(frame)? + ID.needle().len()..];
    Some(&value[..memchr::memchr(b'"', value)?])
}

/// The `id` of the frame as a number, for the generator's numbered sends.
pub fn numeric_id(frame: &[u8]) -> Option<u64> {
    digits(id(frame)?)
}

/// The send time a room message's body carries.
pub fn send_time(frame: &[u8]) -> Option<u64> {
    let value = &frame[SEND_TIME.find(frame)? + SEND_TIME.needle().len()..];
    let end = value.iter().position(|b| !b.is_ascii_digit()).unwrap_or(value.len());
    digits(&value[..end])
}

/// A whole decimal number, no sign, no more than fits.
fn digits(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 19 {
        return None;
    }
    text.iter()
        .try_fold(0u64, |n, &b| b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fields_in_any_order() {
        let go_style = br#"{"conv":"dm:a:b","id":"7","seq":1,"ts":2,"type":"ack"}"#;
        assert_eq!(kind(go_style), Kind::Ack);
        assert_eq!(numeric_id(go_style), Some(7));
        let imbed_style = br#"{"type":"msg","conv":"g:room","seq":3,"from":"m1","group":"room","id":"x1","body":{"t":42,"p":"xx"},"ts":9}"#;
        assert_eq!(kind(imbed_style), Kind::Msg);
        assert_eq!(id(imbed_style), Some(&b"x1"[..]));
        assert_eq!(numeric_id(imbed_style), None);
        assert_eq!(send_time(imbed_style), Some(42));
        assert_eq!(kind(br#"{"type":"welcome","user":"u"}"#), Kind::Welcome);
        assert_eq!(kind(br#"{"user":"u"}"#), Kind::Other);
        assert_eq!(kind(br#"{"type":"ping"}"#), Kind::Other);
    }

    #[test]
    fn numbers_are_plain_decimals() {
        assert_eq!(digits(b"0"), Some(0));
        assert_eq!(digits(b"18446744073709551"), Some(18_446_744_073_709_551));
        assert_eq!(digits(b""), None);
        assert_eq!(digits(b"1a"), None);
        assert_eq!(digits(b"-1"), None);
    }
}
