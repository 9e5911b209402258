//! `wss://`: the server with a certificate from PEM files, a client that
//! trusts it, and what happens to clients that cannot finish TLS.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use imbed::{Config, Error, Server};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use support::start;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message;

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files.
struct Identity {
    dir: tempfile::TempDir,
    cert: CertificateDer<'static>,
}

impl Identity {
    fn new() -> Identity {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let issued = rcgen::generate_simple_self_signed(names).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), issued.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), issued.signing_key.serialize_pem()).unwrap();
        Identity {
            dir,
            cert: issued.cert.der().clone(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    fn config(&self) -> Value {
        json!({"tls": {"cert_path": self.path("cert.pem"), "key_path": self.path("key.pem")}})
    }

    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

async fn wss_connect(
    url: &str,
    identity: &Identity,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let connector = Connector::Rustls(identity.client_config());
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector))
        .await
        .expect("a wss:// connection");
    ws
}

async fn next_json(ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>) -> Value {
    loop {
        let frame = tokio::time::timeout(support::WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_chat_over_wss() {
    let identity = Identity::new();
    let t = start(identity.config());
    let port = t.server.local_addr().unwrap().port();
    let url = |user: &str| format!("wss://localhost:{port}/ws?token={user}");
    let mut alice = wss_connect(&url("alice"), &identity).await;
    let mut bob = wss_connect(&url("bob"), &identity).await;
    assert_eq!(next_json(&mut alice).await["type"], "welcome");
    assert_eq!(next_json(&mut bob).await["type"], "welcome");
    let send = json!({"type": "send", "id": "m1", "to": "bob", "body": {"text": "over TLS"}});
    alice.send(Message::text(send.to_string())).await.unwrap();
    assert_eq!(next_json(&mut alice).await["type"], "ack");
    let delivered = next_json(&mut bob).await;
    assert_eq!(
        (delivered["from"].as_str(), delivered["body"]["text"].as_str()),
        (Some("alice"), Some("over TLS"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_answer_over_tls_and_plain_clients_are_turned_away() {
    let identity = Identity::new();
    let t = start(identity.config());
    let addr = t.server.local_addr().unwrap();

    let plain = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token=eve")).await;
    assert!(plain.is_err(), "a plain ws:// client must not get a session");

    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(identity.client_config());
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = tls.read_to_end(&mut reply).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("\r\n\r\nok\n"), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_tls_is_dropped_at_the_handshake_deadline() {
    let identity = Identity::new();
    let mut config = identity.config();
    config["limits"] = json!({"handshake_timeout_ms": 200});
    let t = start(config);
    let addr = t.server.local_addr().unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // A TLS record header that promises a ClientHello which never comes.
    silent.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(3), silent.read(&mut buf))
        .await
        .expect("not dropped in time");
    assert!(matches!(n, Ok(0) | Err(_)), "expected EOF, got {n:?}");
    // Others are still served.
    let mut ok = wss_connect(&format!("wss://localhost:{}/ws?token=ok", addr.port()), &identity).await;
    assert_eq!(next_json(&mut ok).await["type"], "welcome");
}

fn start_error(tls: Value) -> String {
    let config = json!({"listen": "127.0.0.1:0", "auth": {"mode": "dev"}, "tls": tls});
    let server = Server::new(Config::from_json(&config.to_string()).unwrap()).unwrap();
    match server.start() {
        Err(Error::InvalidConfig(why)) => why,
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn missing_unreadable_or_mismatched_pem_files_fail_at_start_naming_the_field() {
    let identity = Identity::new();
    let other = Identity::new();
    let missing = start_error(json!({"cert_path": "/nonexistent/cert.pem", "key_path": identity.path("key.pem")}));
    assert!(missing.starts_with("tls.cert_path: /nonexistent/cert.pem"), "{missing}");
    let not_a_key = start_error(json!({"cert_path": identity.path("cert.pem"), "key_path": identity.path("cert.pem")}));
    assert!(not_a_key.starts_with("tls.key_path"), "{not_a_key}");
    let empty = identity.path("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let no_cert = start_error(json!({"cert_path": empty, "key_path": identity.path("key.pem")}));
    assert!(no_cert.contains("no certificate"), "{no_cert}");
    let mismatched = start_error(json!({"cert_path": identity.path("cert.pem"), "key_path": other.path("key.pem")}));
    assert!(mismatched.contains("does not fit the certificate"), "{mismatched}");
}

fn tls_client(url: &str, user: &str, ca_path: Option<String>) -> (imbed::Client, Arc<support::RecordingHost>) {
    let config = json!({"url": url, "token": user, "ca_path": ca_path,
        "reconnect": {"initial_ms": 50, "max_ms": 200}});
    let client = imbed::Client::new(imbed::config::ClientConfig::from_json(&config.to_string()).unwrap()).unwrap();
    let recorder = Arc::new(support::RecordingHost::default());
    client.set_host(recorder.clone()).unwrap();
    client.start().unwrap();
    (client, recorder)
}

#[test]
fn the_client_role_trusts_a_private_certificate_from_ca_path_and_only_then() {
    let identity = Identity::new();
    let t = start(identity.config());
    let url = format!("wss://localhost:{}/ws", t.server.local_addr().unwrap().port());

    let (alice, _alice_events) = tls_client(&url, "alice", Some(identity.path("cert.pem")));
    let (_bob, bob_events) = tls_client(&url, "bob", Some(identity.path("cert.pem")));
    bob_events.wait_until("bob connected", |e| e.iter().any(|e| e["state"] == "connected"));
    alice.send("bob", r#"{"text":"private CA"}"#).unwrap();
    bob_events.wait_until("bob got it", |e| {
        e.iter()
            .any(|e| e["event"] == "message" && e["message"]["body"]["text"] == "private CA")
    });

    // Without the certificate, the public roots do not vouch for it.
    let (_eve, eve_events) = tls_client(&url, "eve", None);
    eve_events.wait_until("eve refused", |e| {
        e.iter()
            .any(|e| e["state"] == "disconnected" && e["reason"].as_str().is_some_and(|r| r.contains("certificate")))
    });
    assert!(!eve_events.events_of("state").iter().any(|e| e["state"] == "connected"));
}

#[test]
fn a_ca_path_without_certificates_is_refused_when_the_client_is_made() {
    let config = json!({"url": "wss://localhost:1/ws", "token": "t", "ca_path": "/nonexistent/ca.pem"});
    let made = imbed::Client::new(imbed::config::ClientConfig::from_json(&config.to_string()).unwrap());
    match made {
        Err(Error::InvalidConfig(why)) => assert!(why.starts_with("ca_path: /nonexistent/ca.pem"), "{why}"),
        Err(other) => panic!("expected InvalidConfig, got {other:?}"),
        Ok(_) => panic!("expected InvalidConfig, got a client"),
    }
}
