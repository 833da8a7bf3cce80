//! JWT bearer tokens (`jsonwebtoken`), checked against the keys of a JWKS: signature by a key of
//! the set (chosen by `kid`), one of the configured asymmetric algorithms, `iss`, `aud`, `exp`
//! and `nbf` with the configured leeway. Scopes come from a configured claim.

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use std::time::Duration;
use tokio::sync::RwLock;
use tokio::time::Instant;

use super::config::{redact_url, JwtConfig};
use super::scope::{Principal, Scope};

/// The algorithms a JWKS key may sign with; symmetric ones and `none` are not among them.
pub fn algorithm(name: &str) -> Result<Algorithm, String> {
    let alg = match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        other => {
            return Err(format!(
                "auth.jwt.algorithms: {other:?} is not accepted (asymmetric algorithms only: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
            ))
        }
    };
    Ok(alg)
}

/// The key set and when it was fetched; when a fetch was last tried (it may have failed), so a
/// JWKS URL that does not answer is asked at most every tenth of `jwks_refresh`, not per token.
#[derive(Default)]
struct Keys {
    set: Option<(JwkSet, Instant)>,
    tried: Option<Instant>,
}

pub struct Verifier {
    config: JwtConfig,
    algorithms: Vec<Algorithm>,
    keys: RwLock<Keys>,
    http: reqwest::Client,
}

impl Verifier {
    /// A JWKS file must be readable now; a JWKS URL is fetched now if it answers, and again on
    /// demand if it does not (the API starts while the identity provider is away).
    pub async fn new(config: JwtConfig) -> Result<Self, String> {
        config.validate()?;
        let algorithms = config
            .algorithms
            .iter()
            .map(|a| algorithm(a))
            .collect::<Result<_, _>>()?;
        let verifier = Self {
            config,
            algorithms,
            keys: RwLock::new(Keys::default()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| format!("auth.jwt: cannot build the HTTP client: {e}"))?,
        };
        verifier.keys.write().await.tried = Some(Instant::now());
        match verifier.load().await {
            Ok(set) => verifier.keys.write().await.set = Some((set, Instant::now())),
            Err(e) if verifier.config.jwks_url.is_some() => {
                tracing::error!(error = %e, "cannot fetch the JWKS yet; JWTs are refused until it answers")
            }
            Err(e) => return Err(e),
        }
        Ok(verifier)
    }

    async fn load(&self) -> Result<JwkSet, String> {
        let text = match (&self.config.jwks_file, &self.config.jwks_url) {
            (Some(file), _) => tokio::fs::read_to_string(file)
                .await
                .map_err(|e| format!("auth.jwt.jwks_file {}: {e}", file.display()))?,
            (None, Some(url)) => {
                let fetched = async {
                    self.http
                        .get(url)
                        .send()
                        .await?
                        .error_for_status()?
                        .text()
                        .await
                };
                // The driver's error may repeat the URL, query and all: name it redacted only.
                fetched.await.map_err(|e| {
                    format!("auth.jwt.jwks_url {}: {}", redact_url(url), e.without_url())
                })?
            }
            (None, None) => return Err("auth.jwt: no JWKS configured".into()),
        };
        serde_json::from_str(&text).map_err(|e| format!("auth.jwt: the JWKS is not valid: {e}"))
    }

    /// The key set, fetched again when it is older than `jwks_refresh`, or (for an unknown
    /// `kid`, a rotation) when it is older than a tenth of that.
    async fn key_for(&self, kid: Option<&str>) -> Result<DecodingKey, String> {
        let find = |set: &JwkSet| -> Option<Result<DecodingKey, String>> {
            let jwk = match kid {
                Some(kid) => set.find(kid)?,
                None if set.keys.len() == 1 => &set.keys[0],
                None => {
                    return Some(Err(
                        "the token names no kid and the JWKS has several keys".into()
                    ))
                }
            };
            if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                return Some(Err(
                    "the JWKS key is symmetric; only asymmetric keys are used".into(),
                ));
            }
            Some(DecodingKey::from_jwk(jwk).map_err(|e| format!("the JWKS key is unusable: {e}")))
        };
        let refresh = self.config.jwks_refresh;
        {
            let keys = self.keys.read().await;
            if let Some((set, at)) = keys.set.as_ref() {
                let fresh = at.elapsed() < refresh;
                match find(set) {
                    Some(found) if fresh => return found,
                    None if at.elapsed() < refresh / 10 => {
                        return Err("no key of the JWKS matches the token's kid".into())
                    }
                    _ => {}
                }
            }
        }
        let mut keys = self.keys.write().await;
        // Another request may have refreshed it while this one waited for the lock.
        let stale = keys.tried.is_none_or(|at| at.elapsed() >= refresh / 10);
        if stale {
            keys.tried = Some(Instant::now());
            match self.load().await {
                Ok(set) => keys.set = Some((set, Instant::now())),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot refresh the JWKS; keeping the keys it had")
                }
            }
        }
        match keys.set.as_ref() {
            Some((set, _)) => find(set)
                .unwrap_or_else(|| Err("no key of the JWKS matches the token's kid".into())),
            None => Err("the JWKS is not available".into()),
        }
    }

    /// The caller a valid token names; the reason a token is refused otherwise (never the token).
    pub async fn verify(&self, token: &str) -> Result<Principal, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(format!(
                "the token's algorithm {:?} is not accepted",
                header.alg
            ));
        }
        let key = self.key_for(header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| format!("the token is not valid: {e}"))?
            .claims;
        let name = match claims.get(&self.config.name_claim) {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => s.clone(),
            _ => {
                return Err(format!(
                    "the token has no {:?} claim",
                    self.config.name_claim
                ))
            }
        };
        let scopes = match claims.get(&self.config.scopes_claim) {
            Some(Value::String(s)) => s
                .split_whitespace()
                .filter_map(|s| s.parse().ok())
                .collect(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|s| s.as_str()?.parse::<Scope>().ok())
                .collect(),
            _ => Vec::new(),
        };
        Ok(Principal {
            name: format!("jwt:{name}"),
            scopes,
        })
    }
}
