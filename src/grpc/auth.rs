//! Bearer tokens for internal callers: `authorization: Bearer <token>`, compared in constant time.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The accepted tokens, kept only as SHA-256 digests so every comparison has the same length.
#[derive(Clone, Default)]
pub(crate) struct BearerTokens {
    digests: Vec<[u8; 32]>,
}

impl BearerTokens {
    pub(crate) fn new(tokens: &[SecretString]) -> Self {
        Self {
            digests: tokens
                .iter()
                .map(|t| Sha256::digest(t.expose_secret().as_bytes()).into())
                .collect(),
        }
    }

    /// No tokens configured: every caller is let in (development, or mTLS only).
    pub(crate) fn is_disabled(&self) -> bool {
        self.digests.is_empty()
    }

    /// True when `authorization` carries one of the tokens (or when none are configured).
    pub(crate) fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        if self.is_disabled() {
            return true;
        }
        let Some(presented) = authorization.and_then(bearer) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented).into();
        // Look at every token, so timing does not tell which one matched.
        self.digests
            .iter()
            .fold(subtle::Choice::from(0), |found, d| found | d.ct_eq(&digest))
            .into()
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive).
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = header.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> BearerTokens {
        BearerTokens::new(&[SecretString::from("alpha"), SecretString::from("beta")])
    }

    #[test]
    fn any_configured_token_is_accepted() {
        assert!(tokens().accepts(Some(b"Bearer alpha")));
        assert!(tokens().accepts(Some(b"bearer beta")));
    }

    #[test]
    fn missing_wrong_or_malformed_tokens_are_refused() {
        assert!(!tokens().accepts(None));
        assert!(!tokens().accepts(Some(b"Bearer gamma")));
        assert!(!tokens().accepts(Some(b"Bearer ")));
        assert!(!tokens().accepts(Some(b"Basic alpha")));
        assert!(!tokens().accepts(Some(b"alpha")));
    }

    #[test]
    fn no_tokens_means_no_check() {
        assert!(BearerTokens::default().accepts(None));
    }
}
