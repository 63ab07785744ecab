//! Device cookies (OWASP's "slow down online guessing attacks with device
//! cookies"): a browser that signed in to an account before carries a signed
//! note saying so. Wrong passwords sent for the account from everywhere else
//! shut the account for a while, but not for that browser, so whoever makes
//! enough machines guess cannot keep the owner out. The limits per address
//! still apply to it.

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const COOKIE: &str = "fd_device";
/// How long a browser stays known without signing in again.
const LIFETIME_SECS: i64 = 180 * 24 * 60 * 60;

/// Signs and checks device cookies; derived from `SESSION_SECRET`, so every
/// instance knows the browsers every other one saw.
#[derive(Clone)]
pub struct DeviceKey([u8; 32]);

impl DeviceKey {
    pub fn derive(session_secret: &str) -> Self {
        let mut mac = Self::mac_with(session_secret.as_bytes());
        mac.update(b"frontdesk device cookie v1");
        Self(mac.finalize().into_bytes().into())
    }

    /// The cookie's value for `email` (as typed at sign-in, lower-cased),
    /// issued at `now` (Unix seconds).
    pub fn issue(&self, email: &str, now: i64) -> String {
        let tag = self.tag(email, now).finalize().into_bytes();
        format!("{now}.{}", hex::encode(tag))
    }

    /// Whether `value` is a cookie this server issued for `email` less than
    /// its lifetime ago.
    pub fn recognizes(&self, value: &str, email: &str, now: i64) -> bool {
        let Some((issued, tag)) = value.split_once('.') else {
            return false;
        };
        let (Ok(issued), Ok(tag)) = (issued.parse::<i64>(), hex::decode(tag)) else {
            return false;
        };
        // `issued` is the visitor's to write: a far-off one must not overflow.
        now.checked_sub(issued)
            .is_some_and(|age| (0..=LIFETIME_SECS).contains(&age))
            && self.tag(email, issued).verify_slice(&tag).is_ok()
    }

    /// Whether the request carries a cookie for `email`.
    pub fn known(&self, req: &HttpRequest, email: &str) -> bool {
        req.cookie(COOKIE)
            .is_some_and(|c| self.recognizes(c.value(), email, chrono::Utc::now().timestamp()))
    }

    /// The cookie to set once `email` signed in.
    pub fn cookie(&self, email: &str, secure: bool) -> Cookie<'static> {
        Cookie::build(COOKIE, self.issue(email, chrono::Utc::now().timestamp()))
            .path("/")
            .http_only(true)
            .secure(secure)
            .same_site(SameSite::Lax)
            .max_age(CookieDuration::seconds(LIFETIME_SECS))
            .finish()
    }

    fn tag(&self, email: &str, issued: i64) -> Hmac<Sha256> {
        let mut mac = Self::mac_with(&self.0);
        mac.update(format!("{issued}:{email}").as_bytes());
        mac
    }

    fn mac_with(key: &[u8]) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
    }
}

#[cfg(test)]
mod tests {
    use super::DeviceKey;

    #[test]
    fn a_cookie_names_one_account_and_expires() {
        let key = DeviceKey::derive("a session secret of at least thirty-two chars");
        let now = 1_800_000_000;
        let cookie = key.issue("owner@acme.test", now);
        assert!(key.recognizes(&cookie, "owner@acme.test", now + 60));
        assert!(!key.recognizes(&cookie, "other@acme.test", now + 60));
        assert!(!key.recognizes(&cookie, "owner@acme.test", now + 181 * 86_400));
        assert!(!key.recognizes(&cookie, "owner@acme.test", now - 10));
        let other = DeviceKey::derive("another secret, another deployment entirely");
        assert!(!other.recognizes(&cookie, "owner@acme.test", now + 60));
        // Tampered: a later issue date under the old tag, a garbled tag.
        let (_, tag) = cookie.split_once('.').unwrap();
        assert!(!key.recognizes(&format!("{}.{tag}", now + 5), "owner@acme.test", now + 60));
        for bad in [
            "",
            ".",
            "x.y",
            "1800000000",
            "1800000000.zz",
            "-9223372036854775808.00",
            "9223372036854775807.00",
        ] {
            assert!(!key.recognizes(bad, "owner@acme.test", now), "{bad:?}");
        }
    }
}
