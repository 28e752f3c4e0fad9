//! Access control: signed tokens that grant one identity read or read-write access to a
//! document until a time (docs/protocol.md, *Access control*).
//!
//! A token is `dsync1.<payload>.<mac>`: the payload is base64url (no padding) of five lines —
//! the format version `1`, the document (`*`: every document), the rights (`r` or `w`), the
//! expiry in Unix seconds and the subject (who it was issued to); the MAC is base64url of
//! HMAC-SHA-256 over `dsync1.<payload>` keyed with the server's secret. Names hold no control
//! characters (the engine refuses them), so a newline cannot be smuggled into a field.
//!
//! The engine checks tokens itself (sans-IO): the expiry against the wall time the driver gave
//! it at start plus its own clock, so a simulation stays deterministic.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a token allows on its document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rights {
    /// Read the text and receive changes; edits are refused (`read_only`).
    Read,
    /// Read and edit.
    Write,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who the token was issued to. Sessions are bound to it: a client id opens the same
    /// session only under the same subject.
    pub subject: String,
    /// The document (`*`: every document).
    pub doc: String,
    /// Read or read-write.
    pub rights: Rights,
    /// Unix seconds after which the token is refused.
    pub expires_unix_s: u64,
}

impl Grant {
    /// Whether the grant covers `doc`.
    pub fn covers(&self, doc: &str) -> bool {
        self.doc == "*" || self.doc == doc
    }
}

/// The server's signing secret: 32 bytes. Its `Debug` does not print it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Secret(pub [u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// 64 hex digits (what `dsync-server secret` writes; surrounding whitespace ignored).
    pub fn from_hex(s: &str) -> Result<Secret, TokenError> {
        let s = s.trim();
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::BadSecret);
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| TokenError::BadSecret)?;
        }
        Ok(Secret(out))
    }

    /// The secret as 64 hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length; 32 bytes never fails.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC accepts any key length")
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token, and the server requires one.
    #[error("this server requires a token (ask its operator: dsync-server token --doc DOC)")]
    Missing,
    /// Not of the form `dsync1.<payload>.<mac>`, or a payload that does not parse.
    #[error("the token is malformed")]
    Malformed,
    /// The MAC does not match: not issued with this server's secret, or altered.
    #[error("the token's signature does not match this server's secret")]
    BadSignature,
    /// Past its expiry.
    #[error("the token expired at {expired_unix_s} (Unix seconds)")]
    Expired {
        /// When it expired.
        expired_unix_s: u64,
    },
    /// Valid, for another document.
    #[error("the token is for document {granted:?}, not {asked:?}")]
    WrongDocument {
        /// The token's document.
        granted: String,
        /// The document asked for.
        asked: String,
    },
    /// A field cannot go into a token (a control character, or empty).
    #[error(
        "a token's document and subject must be 1 or more characters without control characters"
    )]
    BadField,
    /// A secret is not 64 hex digits.
    #[error("a secret is 64 hex digits")]
    BadSecret,
}

const PREFIX: &str = "dsync1.";

/// Sign a grant: the token a client presents in `connect`.
pub fn issue(secret: &Secret, grant: &Grant) -> Result<String, TokenError> {
    let bad = |s: &str| s.is_empty() || s.chars().any(char::is_control);
    if bad(&grant.doc) || bad(&grant.subject) {
        return Err(TokenError::BadField);
    }
    let rights = match grant.rights {
        Rights::Read => "r",
        Rights::Write => "w",
    };
    let payload = format!(
        "1\n{}\n{rights}\n{}\n{}",
        grant.doc, grant.expires_unix_s, grant.subject
    );
    let signed = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(payload));
    let mut mac = secret.mac();
    mac.update(signed.as_bytes());
    let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{signed}.{tag}"))
}

/// Check a token's signature and expiry (`now_unix_s`); the document is checked by the caller
/// ([`Grant::covers`]). The MAC is compared in constant time.
pub fn verify(secret: &Secret, token: &str, now_unix_s: u64) -> Result<Grant, TokenError> {
    let rest = token.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
    let (payload_b64, tag_b64) = rest.split_once('.').ok_or(TokenError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag_b64)
        .map_err(|_| TokenError::Malformed)?;
    let mut mac = secret.mac();
    mac.update(&token.as_bytes()[..PREFIX.len() + payload_b64.len()]);
    mac.verify_slice(&tag)
        .map_err(|_| TokenError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| TokenError::Malformed)?;
    let payload = String::from_utf8(payload).map_err(|_| TokenError::Malformed)?;
    let mut fields = payload.splitn(5, '\n');
    let mut next = || fields.next().ok_or(TokenError::Malformed);
    let (version, doc, rights, expires, subject) = (next()?, next()?, next()?, next()?, next()?);
    if version != "1" || doc.is_empty() || subject.is_empty() {
        return Err(TokenError::Malformed);
    }
    let rights = match rights {
        "r" => Rights::Read,
        "w" => Rights::Write,
        _ => return Err(TokenError::Malformed),
    };
    let expires_unix_s: u64 = expires.parse().map_err(|_| TokenError::Malformed)?;
    if now_unix_s >= expires_unix_s {
        return Err(TokenError::Expired {
            expired_unix_s: expires_unix_s,
        });
    }
    Ok(Grant {
        subject: subject.to_string(),
        doc: doc.to_string(),
        rights,
        expires_unix_s,
    })
}

/// Who may do what on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// Anyone may read and write every document (local use; the server says so loudly).
    #[default]
    Open,
    /// A `connect` must carry a token signed with `secret`, valid at `unix_ms_at_zero` plus the
    /// engine's clock.
    Tokens {
        /// The signing secret.
        secret: Secret,
        /// The wall time (Unix ms) at the engine's time 0.
        unix_ms_at_zero: u64,
    },
}

impl Access {
    /// What `token` grants on `doc` at engine time `now_ms`. Open access grants write to an
    /// anonymous subject (`None`).
    pub fn check(
        &self,
        token: Option<&str>,
        doc: &str,
        now_ms: u64,
    ) -> Result<(Option<String>, Rights), TokenError> {
        let Access::Tokens {
            secret,
            unix_ms_at_zero,
        } = self
        else {
            return Ok((None, Rights::Write));
        };
        let token = token.ok_or(TokenError::Missing)?;
        let now_unix_s = unix_ms_at_zero.saturating_add(now_ms) / 1000;
        let grant = verify(secret, token, now_unix_s)?;
        if !grant.covers(doc) {
            return Err(TokenError::WrongDocument {
                granted: grant.doc,
                asked: doc.to_string(),
            });
        }
        Ok((Some(grant.subject), grant.rights))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(doc: &str, rights: Rights) -> Grant {
        Grant {
            subject: "alice".into(),
            doc: doc.into(),
            rights,
            expires_unix_s: 2_000,
        }
    }

    const S: Secret = Secret([7; 32]);

    #[test]
    fn a_token_verifies_to_what_was_issued() {
        for rights in [Rights::Read, Rights::Write] {
            let g = grant("notes", rights);
            let t = issue(&S, &g).unwrap();
            assert!(t.starts_with("dsync1."));
            assert_eq!(verify(&S, &t, 1_999), Ok(g));
        }
    }

    #[test]
    fn every_refusal_has_its_reason() {
        let t = issue(&S, &grant("notes", Rights::Write)).unwrap();
        assert_eq!(
            verify(&S, &t, 2_000),
            Err(TokenError::Expired {
                expired_unix_s: 2_000
            })
        );
        assert_eq!(
            verify(&Secret([8; 32]), &t, 0),
            Err(TokenError::BadSignature)
        );
        // Any altered character of the payload breaks the signature.
        let mut forged = t.clone().into_bytes();
        forged[10] = if forged[10] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(matches!(
            verify(&S, &forged, 0),
            Err(TokenError::BadSignature | TokenError::Malformed)
        ));
        for junk in [
            "",
            "dsync1.",
            "dsync1.abc",
            "dsync2.a.b",
            "dsync1.a.b.c",
            "x",
        ] {
            assert!(verify(&S, junk, 0).is_err(), "{junk:?}");
        }
        // A read token cannot be turned into a write token: the rights are signed.
        let r = issue(&S, &grant("notes", Rights::Read)).unwrap();
        let w = issue(&S, &grant("notes", Rights::Write)).unwrap();
        let (rp, _) = r.rsplit_once('.').unwrap();
        let (_, wt) = w.rsplit_once('.').unwrap();
        assert_eq!(
            verify(&S, &format!("{rp}.{wt}"), 0),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            issue(&S, &grant("no\ntes", Rights::Read)),
            Err(TokenError::BadField)
        );
    }

    #[test]
    fn access_checks_the_document_and_the_clock() {
        let a = Access::Tokens {
            secret: S,
            unix_ms_at_zero: 1_000_000,
        };
        let t = issue(&S, &grant("notes", Rights::Read)).unwrap();
        assert_eq!(
            a.check(Some(&t), "notes", 0),
            Ok((Some("alice".into()), Rights::Read))
        );
        assert!(matches!(
            a.check(Some(&t), "other", 0),
            Err(TokenError::WrongDocument { .. })
        ));
        // 1,000 s after time 0 the token (expiring at 2,000 s) has expired.
        assert!(matches!(
            a.check(Some(&t), "notes", 1_000_000),
            Err(TokenError::Expired { .. })
        ));
        assert_eq!(a.check(None, "notes", 0), Err(TokenError::Missing));
        let all = issue(&S, &grant("*", Rights::Write)).unwrap();
        assert_eq!(
            a.check(Some(&all), "anything", 0),
            Ok((Some("alice".into()), Rights::Write))
        );
        assert_eq!(Access::Open.check(None, "x", 0), Ok((None, Rights::Write)));
    }

    #[test]
    fn secrets_round_trip_through_hex_and_stay_out_of_debug() {
        let s = Secret([0xab; 32]);
        assert_eq!(Secret::from_hex(&format!(" {}\n", s.to_hex())), Ok(s));
        assert_eq!(Secret::from_hex("abc"), Err(TokenError::BadSecret));
        assert_eq!(format!("{s:?}"), "Secret(..)");
    }
}
