//! Authentication: the three ways a token arrives and the three modes.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use support::{Client, open, start};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn jwt(claims: Value, secret: &str, alg: Algorithm) -> String {
    encode(&Header::new(alg), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

async fn assert_rejected(mut client: Client) {
    let error = client.recv().await;
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str()),
        (Some("error"), Some("unauthorized")),
        "{error}"
    );
    assert_eq!(client.closed_with().await, Some(CloseCode::Policy));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_arrives_by_header_query_or_first_frame() {
    let t = start(json!({}));
    let mut by_header = open(&t.url, Some("hal")).await.unwrap();
    assert_eq!(by_header.recv().await["user"], "hal");
    let welcome = open(&format!("{}?token=q%40x", t.url), None)
        .await
        .unwrap()
        .recv()
        .await;
    assert_eq!(welcome["user"], "q@x");
    let mut by_frame = open(&t.url, None).await.unwrap();
    by_frame.send_json(json!({"type": "auth", "token": "fran"})).await;
    let welcome = by_frame.recv().await;
    assert_eq!(
        (welcome["user"].as_str(), welcome["type"].as_str()),
        (Some("fran"), Some("welcome"))
    );
    assert!(welcome["session"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(welcome["server_time"].as_i64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_frame_before_auth_is_unauthorized_with_1008() {
    let t = start(json!({}));
    let mut client = open(&t.url, None).await.unwrap();
    client.send_json(json!({"type": "ping", "id": "p"})).await;
    assert_rejected(client).await;
    // A dev token must still be a valid id.
    assert_rejected(open(&format!("{}?token=no%20spaces", t.url), None).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_after_the_upgrade_times_out_as_unauthorized() {
    let t = start(json!({"limits": {"handshake_timeout_ms": 300}}));
    let client = open(&t.url, None).await.unwrap();
    assert_rejected(client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_mode_accepts_only_valid_hs256_tokens() {
    let secret = "s3cret-s3cret-s3cret-s3cret-s3cret";
    let t = start(json!({"auth": {"mode": "jwt", "secret": secret}}));
    let valid = jwt(json!({"sub": "jay", "exp": now() + 60}), secret, Algorithm::HS256);
    let mut client = open(&t.url, Some(&valid)).await.unwrap();
    assert_eq!(client.recv().await["user"], "jay");

    let rejected = [
        jwt(json!({"sub": "jay", "exp": now() - 5}), secret, Algorithm::HS256),
        jwt(json!({"sub": "jay", "exp": now() + 60}), "wrong", Algorithm::HS256),
        jwt(json!({"sub": "jay"}), secret, Algorithm::HS256),
        jwt(json!({"exp": now() + 60}), secret, Algorithm::HS256),
        jwt(json!({"sub": "jay", "exp": now() + 60}), secret, Algorithm::HS512),
        jwt(
            json!({"sub": "jay", "exp": now() + 60, "nbf": now() + 30}),
            secret,
            Algorithm::HS256,
        ),
        jwt(
            json!({"sub": "not valid!", "exp": now() + 60}),
            secret,
            Algorithm::HS256,
        ),
        "not.a.jwt".to_owned(),
    ];
    for token in rejected {
        assert_rejected(open(&t.url, Some(&token)).await.unwrap()).await;
    }
    // alg "none": a header and claims with no signature.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&json!({"sub": "jay", "exp": now() + 60}))
    );
    assert_rejected(open(&t.url, Some(&none)).await.unwrap()).await;
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_issuer_and_audience_are_enforced_when_configured() {
    let secret = "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk";
    let t = start(json!({"auth": {"mode": "jwt", "secret": secret, "issuer": "idp", "audience": "chat"}}));
    let good = jwt(
        json!({"sub": "ian", "exp": now() + 60, "iss": "idp", "aud": "chat"}),
        secret,
        Algorithm::HS256,
    );
    assert_eq!(open(&t.url, Some(&good)).await.unwrap().recv().await["user"], "ian");
    for claims in [
        json!({"sub": "ian", "exp": now() + 60, "iss": "other", "aud": "chat"}),
        json!({"sub": "ian", "exp": now() + 60, "iss": "idp", "aud": "other"}),
        json!({"sub": "ian", "exp": now() + 60}),
    ] {
        assert_rejected(
            open(&t.url, Some(&jwt(claims, secret, Algorithm::HS256)))
                .await
                .unwrap(),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_mode_asks_the_host() {
    let t = start(json!({"auth": {"mode": "callback"}}));
    let mut ok = open(&t.url, Some("ok:carol")).await.unwrap();
    assert_eq!(ok.recv().await["user"], "carol");
    assert_rejected(open(&t.url, Some("nope")).await.unwrap()).await;
    // The host returned an invalid id: rejected too.
    assert_rejected(open(&t.url, Some("ok:bad id")).await.unwrap()).await;
}

#[test]
fn callback_mode_without_a_host_fails_to_start() {
    let config = imbed::Config::from_json(r#"{"listen":"127.0.0.1:0"}"#).unwrap();
    let server = imbed::Server::new(config).unwrap();
    assert!(matches!(server.start(), Err(imbed::Error::InvalidConfig(m)) if m.contains("auth.mode")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_names_its_device_by_token_query_or_auth_frame() {
    let device_of = |mut welcome: Value| welcome["device"].take();
    let t = start(json!({}));
    let mut by_query = open(&format!("{}?token=ann&device=laptop", t.url), None).await.unwrap();
    assert_eq!(device_of(by_query.recv().await), "laptop");
    let mut by_frame = open(&t.url, None).await.unwrap();
    by_frame
        .send_json(json!({"type": "auth", "token": "bo", "device": "watch"}))
        .await;
    assert_eq!(device_of(by_frame.recv().await), "watch");
    let mut query_then_frame = open(&format!("{}?device=tv", t.url), None).await.unwrap();
    query_then_frame.send_json(json!({"type": "auth", "token": "bo"})).await;
    assert_eq!(
        device_of(query_then_frame.recv().await),
        "tv",
        "?device= counts with a token in the frame"
    );
    let mut unnamed = open(&format!("{}?token=cy", t.url), None).await.unwrap();
    let made_up = device_of(unnamed.recv().await);
    assert!(made_up.as_str().is_some_and(|d| d.starts_with("d-")), "{made_up}");
    assert_rejected(open(&format!("{}?token=di&device=a%20b", t.url), None).await.unwrap()).await;
    let host = t.host.clone();
    let connected =
        tokio::task::spawn_blocking(move || host.wait_for(|e| e["event"] == "connected" && e["user"] == "ann"))
            .await
            .unwrap();
    assert_eq!(connected["device"], "laptop", "{connected}");

    let secret = "s3cret-s3cret-s3cret-s3cret-s3cret";
    let jwt_server = start(json!({"auth": {"mode": "jwt", "secret": secret}}));
    let token = jwt(
        json!({"sub": "jay", "exp": now() + 60, "device": "phone"}),
        secret,
        Algorithm::HS256,
    );
    let mut named = open(&format!("{}?device=other", jwt_server.url), Some(&token))
        .await
        .unwrap();
    assert_eq!(device_of(named.recv().await), "phone", "the token's device wins");

    let callback = start(json!({"auth": {"mode": "callback"}}));
    let mut answered = open(&callback.url, Some("ok:cal/tablet")).await.unwrap();
    let welcome = answered.recv().await;
    assert_eq!(
        (welcome["user"].as_str(), welcome["device"].as_str()),
        (Some("cal"), Some("tablet"))
    );
}
