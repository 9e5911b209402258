//! The client's WebSocket frames, decoded from bytes: RFC 6455's rules for a
//! server that negotiates no extension, on tungstenite's header parser.
//!
//! No socket here: `server::reader` reads the bytes, in buffers it owns
//! only while the client is sending (docs/DECISIONS.md, "The server reads
//! frames into a worker's buffer"), and the fuzz target drives this very
//! code. A frame is decoded where it lies: unmasked in place, then its
//! payload copied out once, as the message's own bytes.

use std::io::Cursor;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// The longest payload of a control frame (RFC 6455, section 5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// What a client sent: a whole message, or a control frame.
#[derive(Debug, PartialEq)]
pub(crate) enum Incoming {
    /// A text message, valid UTF-8.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping; the pong carries its payload.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// The client's close frame.
    Close,
}

/// Why a client's bytes are refused. Each fails the connection, with its
/// own close code.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Refusal {
    /// A frame or a message over the configured size.
    TooBig,
    /// A text message (or a close reason) that is not UTF-8.
    InvalidUtf8,
    /// Anything else RFC 6455 forbids.
    Protocol,
}

/// What [`Decoder::decode`] found at the start of its input.
#[derive(Debug, PartialEq)]
pub(crate) enum Decoded {
    /// Not a whole frame yet; nothing was used. `frame_len`, when the
    /// header is there, is the whole frame's length, header included.
    Incomplete { frame_len: Option<usize> },
    /// A frame of `len` bytes, and the message or control frame it
    /// completed, if any (a fragment completes none until the last).
    Frame { len: usize, incoming: Option<Incoming> },
}

/// A message arriving in fragments.
struct Fragments {
    text: bool,
    payload: Vec<u8>,
    /// How much of `payload` is known to be UTF-8 (text only): a fragment
    /// may end inside a character.
    valid_up_to: usize,
}

/// Decodes one connection's frames, in order. It keeps the message that
/// arrives in fragments, if one does; nothing else.
pub(crate) struct Decoder {
    max_message: usize,
    fragments: Option<Box<Fragments>>,
}

impl Decoder {
    /// A decoder refusing frames and messages over `max_message` bytes.
    pub(crate) fn new(max_message: usize) -> Decoder {
        Decoder {
            max_message,
            fragments: None,
        }
    }

    /// Decodes the frame at the start of `input`, unmasking it in place.
    /// A header that breaks a rule is refused before its payload arrives.
    pub(crate) fn decode(&mut self, input: &mut [u8]) -> Result<Decoded, Refusal> {
        let mut cursor = Cursor::new(&*input);
        // The parser refuses reserved opcodes; reading a slice cannot fail.
        let Some((header, payload_len)) = FrameHeader::parse(&mut cursor).map_err(|_| Refusal::Protocol)? else {
            return Ok(Decoded::Incomplete { frame_len: None });
        };
        let started = self.fragments.as_ref().map_or(0, |f| f.payload.len());
        let is_data = matches!(header.opcode, OpCode::Data(_));
        if payload_len > (self.max_message - if is_data { started } else { 0 }) as u64 {
            return Err(Refusal::TooBig);
        }
        // A server MUST fail the connection on an unmasked frame, and on
        // reserved bits no extension defined.
        let Some(mask) = header.mask else {
            return Err(Refusal::Protocol);
        };
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(Refusal::Protocol);
        }
        let start = cursor.position() as usize;
        let len = start + payload_len as usize;
        if input.len() < len {
            return Ok(Decoded::Incomplete { frame_len: Some(len) });
        }
        let payload = &mut input[start..len];
        unmask(payload, mask);
        let incoming = match header.opcode {
            OpCode::Control(control) => Some(on_control(header.is_final, control, payload)?),
            OpCode::Data(data) => self.on_data(header.is_final, data, payload)?,
        };
        Ok(Decoded::Frame { len, incoming })
    }

    fn on_data(&mut self, fin: bool, data: Data, payload: &[u8]) -> Result<Option<Incoming>, Refusal> {
        let text = match (data, &self.fragments) {
            (Data::Continue, None) | (Data::Text | Data::Binary, Some(_)) | (Data::Reserved(_), _) => {
                return Err(Refusal::Protocol);
            }
            (Data::Continue, Some(_)) => return self.on_continuation(fin, payload),
            (Data::Text, None) => true,
            (Data::Binary, None) => false,
        };
        if fin {
            return whole(text, Bytes::copy_from_slice(payload)).map(Some);
        }
        let mut fragments = Box::new(Fragments {
            text,
            payload: payload.to_vec(),
            valid_up_to: 0,
        });
        fragments.check_utf8()?;
        self.fragments = Some(fragments);
        Ok(None)
    }

    /// A continuation of the message in fragments.
    fn on_continuation(&mut self, fin: bool, payload: &[u8]) -> Result<Option<Incoming>, Refusal> {
        let Some(mut fragments) = self.fragments.take() else {
            return Err(Refusal::Protocol);
        };
        fragments.payload.extend_from_slice(payload);
        fragments.check_utf8()?;
        if !fin {
            self.fragments = Some(fragments);
            return Ok(None);
        }
        let Fragments { text, payload, .. } = *fragments;
        whole(text, Bytes::from(payload)).map(Some)
    }
}

impl Fragments {
    /// Fails fast (RFC 6455, section 8.1): a text message's invalid
    /// sequence is refused in the fragment that brings it, while a
    /// character cut at a fragment's end waits for the next.
    fn check_utf8(&mut self) -> Result<(), Refusal> {
        if !self.text {
            return Ok(());
        }
        match std::str::from_utf8(&self.payload[self.valid_up_to..]) {
            Ok(_) => self.valid_up_to = self.payload.len(),
            Err(e) if e.error_len().is_some() => return Err(Refusal::InvalidUtf8),
            Err(e) => self.valid_up_to += e.valid_up_to(),
        }
        Ok(())
    }
}

/// A control frame: whole and short, or refused.
fn on_control(fin: bool, control: Control, payload: &[u8]) -> Result<Incoming, Refusal> {
    if !fin || payload.len() > MAX_CONTROL_PAYLOAD {
        return Err(Refusal::Protocol);
    }
    match control {
        Control::Ping => Ok(Incoming::Ping(Bytes::copy_from_slice(payload))),
        Control::Pong => Ok(Incoming::Pong),
        // A close frame's body is empty, or a code and a UTF-8 reason.
        Control::Close => match payload {
            [_] => Err(Refusal::Protocol),
            [] => Ok(Incoming::Close),
            [_, _, reason @ ..] => match std::str::from_utf8(reason) {
                Ok(_) => Ok(Incoming::Close),
                Err(_) => Err(Refusal::InvalidUtf8),
            },
        },
        Control::Reserved(_) => Err(Refusal::Protocol),
    }
}

/// A whole message: text is checked for UTF-8.
fn whole(text: bool, payload: Bytes) -> Result<Incoming, Refusal> {
    if !text {
        return Ok(Incoming::Binary(payload));
    }
    Utf8Bytes::try_from(payload)
        .map(Incoming::Text)
        .map_err(|_| Refusal::InvalidUtf8)
}

/// Removes a client's mask, eight bytes at a time.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let [a, b, c, d] = mask;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut words = payload.chunks_exact_mut(8);
    for word in &mut words {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ wide).to_ne_bytes());
    }
    // The rest starts at a multiple of 8, so the mask's phase is 0 there.
    for (byte, key) in words.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *byte ^= key;
    }
}

/// A client's frame, masked: `first` is FIN, the reserved bits and the opcode.
#[cfg(test)]
pub(crate) fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().zip(MASK.iter().cycle()).map(|(p, m)| p ^ m));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Everything `bytes` decodes to, fed in pieces of `piece` bytes the
    /// way the reader feeds a decoder: what is not used is kept.
    fn decode_all(bytes: &[u8], piece: usize) -> Vec<Result<Incoming, Refusal>> {
        let mut decoder = Decoder::new(1024);
        let (mut out, mut pending) = (Vec::new(), Vec::new());
        for chunk in bytes.chunks(piece) {
            pending.extend_from_slice(chunk);
            loop {
                match decoder.decode(&mut pending) {
                    Ok(Decoded::Incomplete { .. }) => break,
                    Ok(Decoded::Frame { len, incoming }) => {
                        pending.drain(..len);
                        out.extend(incoming.map(Ok));
                    }
                    Err(refusal) => {
                        out.push(Err(refusal));
                        return out;
                    }
                }
            }
        }
        out
    }

    fn text(s: &str) -> Result<Incoming, Refusal> {
        Ok(Incoming::Text(s.into()))
    }

    #[test]
    fn messages_decode_whatever_the_pieces_they_arrive_in() {
        let long = "x".repeat(300);
        let mut wire = client_frame(0x81, b"{\"type\":\"ping\"}");
        wire.extend(client_frame(0x89, b"hi"));
        wire.extend(client_frame(0x81, long.as_bytes()));
        wire.extend(client_frame(0x01, "h\u{e9}".as_bytes()[..2].as_ref()));
        wire.extend(client_frame(0x8a, b""));
        wire.extend(client_frame(0x80, &"h\u{e9}".as_bytes()[2..]));
        wire.extend(client_frame(0x82, &[0, 255]));
        wire.extend(client_frame(0x88, &[3, 232, b'o', b'k']));
        let expected = vec![
            text("{\"type\":\"ping\"}"),
            Ok(Incoming::Ping(Bytes::from_static(b"hi"))),
            text(&long),
            Ok(Incoming::Pong),
            text("h\u{e9}"),
            Ok(Incoming::Binary(Bytes::from_static(&[0, 255]))),
            Ok(Incoming::Close),
        ];
        for piece in [1, 2, 3, 7, 64, wire.len()] {
            assert_eq!(decode_all(&wire, piece), expected, "pieces of {piece}");
        }
    }

    #[test]
    fn rule_breakers_are_refused_with_their_reason() {
        let refused = |wire: Vec<u8>| decode_all(&wire, 1).pop().expect("something decoded");
        let unmasked = vec![0x81, 1, b'x'];
        assert_eq!(refused(unmasked), Err(Refusal::Protocol));
        for (wire, why) in [
            (client_frame(0xc1, b"x"), "RSV1"),
            (client_frame(0x83, b"x"), "reserved opcode"),
            (client_frame(0x09, b"x"), "fragmented ping"),
            (client_frame(0x89, &[0; 126]), "long ping"),
            (client_frame(0x80, b"x"), "continue without start"),
            (client_frame(0x88, &[3]), "one-byte close"),
        ] {
            assert_eq!(refused(wire), Err(Refusal::Protocol), "{why}");
        }
        let mut twice = client_frame(0x01, b"a");
        twice.extend(client_frame(0x81, b"b"));
        assert_eq!(refused(twice), Err(Refusal::Protocol), "a new message inside one");
        assert_eq!(refused(client_frame(0x88, &[3, 232, 0xff])), Err(Refusal::InvalidUtf8));
        assert_eq!(refused(client_frame(0x81, &[0xff])), Err(Refusal::InvalidUtf8));
        assert_eq!(refused(client_frame(0x81, &[0; 1025])), Err(Refusal::TooBig));
        let mut over = client_frame(0x01, &[b'a'; 1000]);
        over.extend(client_frame(0x80, &[b'a'; 25]));
        assert_eq!(refused(over), Err(Refusal::TooBig), "fragments over the limit");
    }

    #[test]
    fn a_bad_header_is_refused_before_its_payload_arrives() {
        let mut decoder = Decoder::new(1024);
        let mut header = client_frame(0x81, &[0; 2000])[..8].to_vec();
        assert_eq!(decoder.decode(&mut header), Err(Refusal::TooBig));
        let mut decoder = Decoder::new(1024);
        let mut header = vec![0x81, 100];
        assert_eq!(decoder.decode(&mut header), Err(Refusal::Protocol), "unmasked");
    }

    #[test]
    fn invalid_utf8_is_refused_in_the_fragment_that_brings_it() {
        let mut decoder = Decoder::new(1024);
        let mut first = client_frame(0x01, "\u{e9}".as_bytes()[..1].as_ref());
        assert!(matches!(
            decoder.decode(&mut first),
            Ok(Decoded::Frame { incoming: None, .. })
        ));
        let mut bad = client_frame(0x00, b"x");
        assert_eq!(decoder.decode(&mut bad), Err(Refusal::InvalidUtf8));
    }

    #[test]
    fn unmasking_matches_the_byte_by_byte_rule_at_every_length() {
        for len in 0..40 {
            let plain: Vec<u8> = (0..len as u8).collect();
            let mut masked: Vec<u8> = plain.iter().enumerate().map(|(i, p)| p ^ MASK[i % 4]).collect();
            unmask(&mut masked, MASK);
            assert_eq!(masked, plain, "length {len}");
        }
    }
}
