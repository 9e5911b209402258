//! Turning a token into a user id (and, when the token says, a device), in
//! the configured mode.

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
    /// The device the token was issued to, if the issuer says.
    #[serde(default)]
    device: Option<String>,
}

/// Who a token stands for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The user.
    pub(crate) user: String,
    /// The device, when the token names one.
    pub(crate) device: Option<String>,
}

impl Identity {
    /// A host's `authenticate` answer: `user`, or `user/device`.
    fn from_answer(answer: String) -> Identity {
        match answer.split_once('/') {
            Some((user, device)) => Identity {
                user: user.to_owned(),
                device: Some(device.to_owned()),
            },
            None => Identity {
                user: answer,
                device: None,
            },
        }
    }

    fn is_valid(&self) -> bool {
        is_valid_id(&self.user) && self.device.as_deref().is_none_or(is_valid_id)
    }
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

    /// Who `token` stands for, or `None` if it is not accepted.
    pub(crate) async fn authenticate(&self, token: String, gate: &Arc<CallbackGate>) -> Option<Identity> {
        let identity = match self {
            Authenticator::Dev => Some(Identity {
                user: token,
                device: None,
            }),
            Authenticator::Jwt { key, validation } => decode::<Claims>(&token, key, validation)
                .map(|data| Identity {
                    user: data.claims.sub,
                    device: data.claims.device,
                })
                .map_err(|e| tracing::debug!(reason = ?e.kind(), "jwt rejected"))
                .ok(),
            Authenticator::Callback => {
                // The host may block (a database look-up): keep it off the workers.
                let gate = gate.clone();
                tokio::task::spawn_blocking(move || gate.call(|host| host.authenticate(&token)).flatten())
                    .await
                    .ok()
                    .flatten()
                    .map(Identity::from_answer)
            }
        };
        identity.filter(Identity::is_valid)
    }
}

#[cfg(test)]
mod tests {
    use super::Identity;

    #[test]
    fn a_host_answer_may_name_the_device_after_a_slash() {
        assert_eq!(
            Identity::from_answer("alice/phone-1".into()),
            Identity {
                user: "alice".into(),
                device: Some("phone-1".into())
            }
        );
        assert_eq!(Identity::from_answer("alice".into()).device, None);
        assert!(!Identity::from_answer("alice/".into()).is_valid());
        assert!(!Identity::from_answer("alice/a/b".into()).is_valid());
    }
}
