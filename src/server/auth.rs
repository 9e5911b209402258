//! Turning a token into a user id, in the configured mode.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;

use crate::config::AuthConfig;
use crate::host::gate::CallbackGate;
use crate::protocol::is_valid_id;

/// The configured authentication mode, ready to use.
pub(crate) enum Authenticator {
    /// The token is the user id.
    Dev,
    /// An HS256 JWT whose `sub` is the user id.
    Jwt {
        /// The HMAC key.
        key: DecodingKey,
        /// Algorithm pinned to HS256; `exp` and `sub` required; `nbf` honored.
        validation: Box<Validation>,
    },
    /// The host's `authenticate` callback decides.
    Callback,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

impl Authenticator {
    /// Prepares the mode of `config`.
    pub(crate) fn new(config: &AuthConfig) -> Authenticator {
        match config {
            AuthConfig::Dev {} => Authenticator::Dev,
            AuthConfig::Callback {} => Authenticator::Callback,
            AuthConfig::Jwt {
                secret,
                issuer,
                audience,
            } => {
                let mut validation = Validation::new(Algorithm::HS256);
                validation.leeway = 0;
                validation.validate_nbf = true;
                // jsonwebtoken checks iss and aud only when present: a
                // configured one must also be required.
                let mut required = vec!["exp", "sub"];
                if let Some(issuer) = issuer {
                    validation.set_issuer(&[issuer]);
                    required.push("iss");
                }
                match audience {
                    Some(audience) => {
                        validation.set_audience(&[audience]);
                        required.push("aud");
                    }
                    None => validation.validate_aud = false,
                }
                validation.set_required_spec_claims(&required);
                Authenticator::Jwt {
                    key: DecodingKey::from_secret(secret.as_bytes()),
                    validation: Box::new(validation),
                }
            }
        }
    }

    /// The user id `token` stands for, or `None` if it is not accepted.
    pub(crate) async fn authenticate(&self, token: String, gate: &Arc<CallbackGate>) -> Option<String> {
        let user = match self {
            Authenticator::Dev => Some(token),
            Authenticator::Jwt { key, validation } => decode::<Claims>(&token, key, validation)
                .map(|data| data.claims.sub)
                .map_err(|e| tracing::debug!(reason = ?e.kind(), "jwt rejected"))
                .ok(),
            Authenticator::Callback => {
                // The host may block (a database look-up): keep it off the workers.
                let gate = gate.clone();
                tokio::task::spawn_blocking(move || gate.call(|host| host.authenticate(&token)).flatten())
                    .await
                    .ok()
                    .flatten()
            }
        };
        user.filter(|u| is_valid_id(u))
    }
}
