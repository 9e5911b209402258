//! Protocol violations sent from a raw socket: each closes that connection
//! with the right close code, and the server keeps serving everyone else.
//! Frames are built by hand here, because no WebSocket library will send
//! them.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{connect, start};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// One frame: FIN, RSV bits (0–7), opcode, masked or not.
fn frame(fin: bool, rsv: u8, opcode: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let mask_bit = u8::from(masked) << 7;
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=65535 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A raw, authenticated WebSocket connection (dev token `user`).
async fn raw_session(addr: std::net::SocketAddr, user: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /ws?token={user} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        tcp.read_exact(&mut byte).await.unwrap();
        response.push(byte[0]);
    }
    assert!(
        response.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    tcp
}

/// Reads one server frame: its first byte (FIN and opcode) and its payload.
/// Server frames are never masked.
async fn next_frame(tcp: &mut (impl AsyncRead + Unpin)) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await.ok()?;
    assert_eq!(head[1] & 0x80, 0, "a masked server frame");
    let len = match head[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            tcp.read_exact(&mut n).await.unwrap();
            u16::from_be_bytes(n) as usize
        }
        127 => {
            let mut n = [0u8; 8];
            tcp.read_exact(&mut n).await.unwrap();
            u64::from_be_bytes(n) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.unwrap();
    Some((head[0], payload))
}

/// Reads server frames until a close frame; returns its code.
async fn close_code(tcp: &mut (impl AsyncRead + Unpin)) -> u16 {
    let read = async {
        loop {
            let (head, payload) = next_frame(tcp).await.expect("connection ended without a close frame");
            if head & 0x0f == 0x8 {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("no close frame in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_violation_closes_its_connection_with_the_right_code() {
    let t = start(json!({"limits": {"max_frame_bytes": 4096}}));
    let addr = t.server.local_addr().unwrap();
    let mut bystander = connect(&t.url, "bystander").await;
    let ping = br#"{"type":"ping","id":"p"}"#;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked client frame", frame(true, 0, 0x1, false, ping), 1002),
        ("reserved bits set", frame(true, 0b100, 0x1, true, ping), 1002),
        ("reserved data opcode", frame(true, 0, 0x3, true, ping), 1002),
        ("reserved control opcode", frame(true, 0, 0xB, true, b""), 1002),
        (
            "control frame over 125 bytes",
            frame(true, 0, 0x9, true, &[b'x'; 126]),
            1002,
        ),
        ("fragmented control frame", frame(false, 0, 0x9, true, b"ping"), 1002),
        (
            "invalid UTF-8 in a text frame",
            frame(true, 0, 0x1, true, &[0x22, 0xff, 0xfe, 0x22]),
            1007,
        ),
        (
            "continuation with nothing to continue",
            frame(true, 0, 0x0, true, ping),
            1002,
        ),
        (
            "fragment flood past the message limit",
            std::iter::once(frame(false, 0, 0x1, true, b"["))
                .chain((0..2000).map(|_| frame(false, 0, 0x0, true, b"1,2,")))
                .flatten()
                .collect(),
            1009,
        ),
    ];
    for (what, bytes, expected) in cases {
        let mut tcp = raw_session(addr, "raw").await;
        tcp.write_all(&bytes).await.unwrap();
        assert_eq!(close_code(&mut tcp).await, expected, "{what}");
        // Everyone else is still served.
        bystander.send_json(json!({"type": "ping", "id": what})).await;
        assert_eq!(bystander.recv().await["id"], what);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_well_formed_fragmented_message_is_accepted() {
    let t = start(json!({}));
    let mut tcp = raw_session(t.server.local_addr().unwrap(), "frag").await;
    let mut bytes = frame(false, 0, 0x1, true, br#"{"type":"pi"#);
    bytes.extend(frame(false, 0, 0x0, true, br#"ng","id""#));
    bytes.extend(frame(true, 0, 0x0, true, br#":"whole"}"#));
    tcp.write_all(&bytes).await.unwrap();
    // The welcome comes first, then the pong of the reassembled message.
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.contains(r#""type":"pong","id":"whole""#) {
        let mut chunk = [0u8; 512];
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut chunk))
            .await
            .expect("no pong")
            .unwrap();
        assert!(n > 0, "closed instead of answering: {seen}");
        seen.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_never_ends_is_closed_at_the_idle_timeout() {
    // Empty continuations add no bytes, so the size limit never trips; the
    // idle timeout does, because only a complete message counts as activity.
    let t = start(json!({"limits": {"ping_interval_ms": 100, "idle_timeout_ms": 400}}));
    let mut tcp = raw_session(t.server.local_addr().unwrap(), "endless").await;
    let (mut reader, mut writer) = tcp.split();
    let flood = async {
        writer.write_all(&frame(false, 0, 0x1, true, b"[")).await.unwrap();
        while writer.write_all(&frame(false, 0, 0x0, true, b"")).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::select! {
        code = close_code(&mut reader) => assert_eq!(code, 1000),
        _ = flood => {}
    }
    let ended = t.host.wait_for(|e| e["event"] == "disconnected");
    assert_eq!(ended["reason"], "idle timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_pings_are_answered_between_whole_frames_and_a_close_with_one_close() {
    // The reader's pongs reach the socket through the writer, which owns it:
    // among a stream of replies each pong must arrive whole, between frames.
    let t = start(json!({}));
    let mut tcp = raw_session(t.server.local_addr().unwrap(), "pinger").await;
    const ROUNDS: usize = 300;
    let mut bytes = Vec::new();
    for i in 0..ROUNDS {
        let text = format!(r#"{{"type":"ping","id":"p{i}","pad":"{}"}}"#, "x".repeat(i * 7));
        bytes.extend(frame(true, 0, 0x1, true, text.as_bytes()));
        bytes.extend(frame(true, 0, 0x9, true, format!("w{i}").as_bytes()));
    }
    let (mut reader, mut writer) = tcp.split();
    let (_, (texts, pongs)) = tokio::join!(writer.write_all(&bytes), async {
        let (mut texts, mut pongs) = (Vec::new(), Vec::new());
        while pongs.len() < ROUNDS || texts.len() < ROUNDS + 1 {
            let (head, payload) = tokio::time::timeout(Duration::from_secs(5), next_frame(&mut reader))
                .await
                .expect("a reply in time")
                .expect("the connection ended early");
            match head {
                0x81 => texts.push(String::from_utf8(payload).unwrap()),
                0x8a => pongs.push(String::from_utf8(payload).unwrap()),
                other => panic!("unexpected frame {other:#x}"),
            }
        }
        (texts, pongs)
    });
    assert!(texts[0].contains(r#""type":"welcome""#), "{}", texts[0]);
    for i in 0..ROUNDS {
        assert!(texts[i + 1].contains(&format!(r#""id":"p{i}""#)), "{}", texts[i + 1]);
        assert_eq!(pongs[i], format!("w{i}"));
    }
    writer
        .write_all(&frame(true, 0, 0x8, true, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    let (head, payload) = next_frame(&mut reader).await.expect("an answer to the close");
    assert_eq!((head, &payload[..2]), (0x88, &1000u16.to_be_bytes()[..]));
    let after = tokio::time::timeout(Duration::from_secs(5), next_frame(&mut reader))
        .await
        .expect("the server ends the connection");
    assert_eq!(after, None, "nothing follows the close frame");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_sent_with_the_upgrade_request_are_read() {
    // A client that does not wait for the 101: hyper reads its first frames
    // with the request, and the session must read them before the socket.
    let t = start(json!({}));
    let addr = t.server.local_addr().unwrap();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut bytes = format!(
        "GET /ws?token=eager HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    bytes.extend(frame(true, 0, 0x1, true, br#"{"type":"ping","id":"early"}"#));
    bytes.extend(frame(true, 0, 0x9, true, b"early ping"));
    tcp.write_all(&bytes).await.unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        tcp.read_exact(&mut byte).await.unwrap();
        response.push(byte[0]);
    }
    assert!(response.starts_with(b"HTTP/1.1 101"));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let frame = tokio::time::timeout(Duration::from_secs(5), next_frame(&mut tcp))
            .await
            .expect("an answer in time")
            .expect("the connection ended early");
        seen.push((frame.0, String::from_utf8(frame.1).unwrap()));
    }
    assert!(
        seen.iter()
            .any(|(head, text)| *head == 0x81 && text.contains(r#""type":"welcome""#)),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|(head, text)| *head == 0x81 && text.contains(r#""id":"early""#)),
        "{seen:?}"
    );
    assert!(seen.contains(&(0x8a, "early ping".to_owned())), "{seen:?}");
}
