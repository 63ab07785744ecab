//! Transactional email: rendered from askama templates, sent over SMTP (STARTTLS
//! or implicit TLS) or, without `SMTP_URL`, written as `.eml` files so nothing is
//! silently dropped in development.

mod templates;

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor,
};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::Config;

pub use templates::{MailTemplate, Rendered};

const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("SMTP_URL is not usable: {0}")]
    Config(String),
    #[error("invalid address {address:?}: {reason}")]
    Address { address: String, reason: String },
    #[error("the email could not be rendered: {0}")]
    Render(#[from] askama::Error),
    #[error("the email could not be built: {0}")]
    Build(String),
    #[error("SMTP delivery failed: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("writing the email file failed: {0}")]
    File(#[from] lettre::transport::file::Error),
}

impl MailError {
    /// A bad address or template will fail the same way every time.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Address { .. } | Self::Render(_) | Self::Build(_) | Self::Config(_) => true,
            // Only a refusal of this recipient's mailbox is final. Other 5xx
            // replies (bad credentials, a relay refusing us at the greeting)
            // fail every email alike and pass once the relay is mended.
            Self::Smtp(e) => {
                e.is_permanent()
                    && e.status().is_some_and(|code| {
                        let reply = std::error::Error::source(e)
                            .map(ToString::to_string)
                            .unwrap_or_default();
                        refusal_is_final(&code.to_string(), &reply)
                    })
            }
            Self::File(_) => false,
        }
    }
}

/// Whether a permanent SMTP reply refuses this one email rather than every
/// email. The basic codes 550–553 are used for both ("no such user", "sender
/// not authorized"), so the enhanced status code (RFC 3463) decides where the
/// relay gives one: only addressing (5.1.x) and mailbox (5.2.x) problems are
/// about the recipient; policy (5.7.x) and the rest pass once the relay or
/// `MAIL_FROM` is mended.
fn refusal_is_final(code: &str, reply: &str) -> bool {
    if !matches!(code, "550" | "551" | "552" | "553") {
        return false;
    }
    let enhanced = reply.split_whitespace().next().filter(|token| {
        let parts: Vec<&str> = token.split('.').collect();
        parts.len() == 3
            && parts[0] == "5"
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
    });
    match enhanced {
        Some(status) => status.starts_with("5.1.") || status.starts_with("5.2."),
        None => true,
    }
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(AsyncFileTransport<Tokio1Executor>, PathBuf),
}

/// One email waiting to go out: the payload of the `email.send` job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutgoingEmail {
    pub to: String,
    /// Fixed when the email is enqueued, so a retried delivery carries the same id
    /// and mail clients can drop a duplicate.
    pub message_id: String,
    pub template: MailTemplate,
}

impl OutgoingEmail {
    pub fn new(to: &crate::domain::Email, template: MailTemplate, base_url: &Url) -> Self {
        let host = base_url.host_str().unwrap_or("localhost");
        Self {
            to: to.as_str().to_string(),
            message_id: format!("<{}@{}>", hex::encode(rand::random::<[u8; 16]>()), host),
            template,
        }
    }
}

pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    base_url: Url,
}

impl Mailer {
    pub fn from_config(config: &Config) -> Result<Self, MailError> {
        let from: Mailbox =
            config
                .mail_from
                .parse()
                .map_err(|e: lettre::address::AddressError| MailError::Address {
                    address: config.mail_from.clone(),
                    reason: e.to_string(),
                })?;
        let transport = match &config.smtp_url {
            Some(url) => {
                Transport::Smtp(smtp_transport(url.expose(), config.smtp_ca_pem.as_deref())?)
            }
            None => {
                let dir = config.data_dir.join("mail");
                if config.environment.is_production() {
                    // Allowed (a self-hosted install may not need email), but never silent.
                    tracing::warn!(
                        directory = %dir.display(),
                        "SMTP_URL is not set: emails are written as files and not delivered"
                    );
                }
                private_dir(&dir).map_err(|e| {
                    MailError::Config(format!(
                        "SMTP_URL is not set, so emails go to files, but {} cannot be created: {e}",
                        dir.display()
                    ))
                })?;
                Transport::Files(AsyncFileTransport::new(&dir), dir)
            }
        };
        Ok(Self {
            transport,
            from,
            base_url: config.base_url.clone(),
        })
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// Renders and delivers one email.
    pub async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        let message = build(&self.from, email, &self.base_url)?;
        match &self.transport {
            Transport::Smtp(smtp) => {
                smtp.send(message).await?;
                tracing::info!(message_id = %email.message_id, kind = email.template.kind(), "email sent");
            }
            Transport::Files(files, dir) => {
                let id = files.send(message).await?;
                tracing::info!(
                    message_id = %email.message_id,
                    path = %dir.join(format!("{id}.eml")).display(),
                    "SMTP_URL is not set: email written to a file"
                );
            }
        }
        Ok(())
    }
}

/// The message as it goes on the wire: both parts, the fixed Message-ID.
fn build(from: &Mailbox, email: &OutgoingEmail, base_url: &Url) -> Result<Message, MailError> {
    let to: Mailbox = email
        .to
        .parse()
        .map_err(|e: lettre::address::AddressError| MailError::Address {
            address: email.to.clone(),
            reason: e.to_string(),
        })?;
    let rendered = email.template.render(base_url)?;
    Message::builder()
        .from(from.clone())
        .to(to)
        // Names people typed reach the subject: a line break in one must not
        // start a header of its own.
        .subject(one_line(&rendered.subject))
        .message_id(Some(email.message_id.clone()))
        .multipart(MultiPart::alternative_plain_html(
            rendered.text,
            rendered.html,
        ))
        .map_err(|e| MailError::Build(e.to_string()))
}

/// The emails hold working sign-in, reset and invitation links: only the
/// server's own user may read them.
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_control())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The host `SMTP_URL` names, as a resolver takes it: an IPv6 literal without
/// the brackets a URL writes it in.
pub fn smtp_host(url: &Url) -> Option<String> {
    match url.host()? {
        url::Host::Ipv6(ip) => Some(ip.to_string()),
        host => Some(host.to_string()),
    }
}

/// The port `SMTP_URL` leads to: its own, or the usual one for how it asks to
/// connect (465 implicit TLS, 25 plain, else 587 for STARTTLS). `frontdesk
/// check` tries the same one the mailer uses.
pub fn smtp_port(url: &Url) -> u16 {
    url.port().unwrap_or_else(|| {
        let plain = url.query_pairs().any(|(k, v)| k == "tls" && v == "none");
        match url.scheme() {
            "smtps" => 465,
            _ if plain => 25,
            _ => 587,
        }
    })
}

/// `smtps://` is implicit TLS (465); `smtp://` is STARTTLS (587), required unless
/// `?tls=opportunistic` or `?tls=none` (a local relay or a test server). The
/// relay's certificate must chain to a public root, or to `extra_ca` (PEM).
fn smtp_transport(
    url: &Url,
    extra_ca: Option<&[u8]>,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    let host = smtp_host(url).ok_or_else(|| MailError::Config("it has no host".into()))?;
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let tls_params = || {
        let mut params = TlsParameters::builder(host.to_string());
        if let Some(pem) = extra_ca {
            let ca = Certificate::from_pem(pem)
                .map_err(|e| MailError::Config(format!("SMTP_CA_FILE: {e}")))?;
            params = params.add_root_certificate(ca);
        }
        params
            .build_rustls()
            .map_err(|e| MailError::Config(e.to_string()))
    };
    let smtp = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous;
    let builder = match (url.scheme(), tls.as_deref()) {
        ("smtps", _) => smtp(host.as_str()).tls(Tls::Wrapper(tls_params()?)),
        ("smtp", None | Some("required")) => smtp(host.as_str()).tls(Tls::Required(tls_params()?)),
        ("smtp", Some("opportunistic")) => {
            smtp(host.as_str()).tls(Tls::Opportunistic(tls_params()?))
        }
        ("smtp", Some("none")) => smtp(host.as_str()),
        (scheme, tls) => {
            return Err(MailError::Config(format!(
                "unsupported scheme {scheme:?} with tls={tls:?}"
            )));
        }
    };
    let mut builder = builder.port(smtp_port(url));
    if !url.username().is_empty() {
        builder = builder.credentials(Credentials::new(
            percent_decode(url.username()),
            percent_decode(url.password().unwrap_or("")),
        ));
    }
    Ok(builder.timeout(Some(SMTP_TIMEOUT)).build())
}

/// Userinfo in a URL is percent-encoded (`p%40ss` for `p@ss`).
fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{
        MailTemplate, OutgoingEmail, build, percent_decode, private_dir, refusal_is_final,
        smtp_port,
    };

    #[test]
    fn only_a_refused_recipient_gives_an_email_up() {
        assert!(refusal_is_final("550", "5.1.1 no such user"));
        assert!(refusal_is_final("552", "5.2.2 mailbox full"));
        // No enhanced code: the basic code is all there is to go by.
        assert!(refusal_is_final("550", "mailbox unavailable"));
        // The relay's policy about us: every email fails alike until mended.
        assert!(!refusal_is_final("550", "5.7.1 sender not authorized"));
        assert!(!refusal_is_final("553", "5.7.1 sender address rejected"));
        assert!(!refusal_is_final("554", "5.1.1 no such user"));
        assert!(!refusal_is_final("535", "5.7.8 authentication failed"));
    }

    #[test]
    fn the_port_is_the_urls_or_the_one_its_tls_mode_uses() {
        let port = |u: &str| smtp_port(&url::Url::parse(u).unwrap());
        assert_eq!(port("smtps://mail.example.com"), 465);
        assert_eq!(port("smtp://mail.example.com"), 587);
        assert_eq!(port("smtp://mail.example.com?tls=opportunistic"), 587);
        assert_eq!(port("smtp://relay?tls=none"), 25);
        assert_eq!(port("smtp://relay:2525?tls=none"), 2525);
    }

    #[cfg(unix)]
    #[test]
    fn the_mail_folder_is_the_servers_alone() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mail = dir.path().join("data").join("mail");
        private_dir(&mail).unwrap();
        let mode = std::fs::metadata(&mail).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // An existing folder is tightened too.
        std::fs::set_permissions(&mail, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&mail).unwrap();
        let mode = std::fs::metadata(&mail).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn a_line_break_in_a_name_does_not_become_a_header() {
        let base = url::Url::parse("https://support.example.com").unwrap();
        let to = crate::domain::Email::parse("new@example.com").unwrap();
        let email = OutgoingEmail::new(
            &to,
            MailTemplate::Invitation {
                organization: "Acme\r\nBcc: victim@example.net".into(),
                inviter: "Ana\nX-Evil: 1".into(),
                role: "agent".into(),
                token: "t".into(),
            },
            &base,
        );
        let from = "Frontdesk <no-reply@example.com>".parse().unwrap();
        let wire = String::from_utf8(build(&from, &email, &base).unwrap().formatted()).unwrap();
        let head = wire.split("\r\n\r\n").next().unwrap();
        for line in head.split("\r\n") {
            assert!(
                !line.starts_with("Bcc:") && !line.starts_with("X-Evil:"),
                "{head}"
            );
        }
        assert!(
            head.contains("Subject: Ana X-Evil: 1 invited you to Acme Bcc:"),
            "{head}"
        );
    }

    #[test]
    fn decodes_userinfo() {
        assert_eq!(percent_decode("p%40ss%2Bw0rd"), "p@ss+w0rd");
        assert_eq!(percent_decode("a+b"), "a+b");
    }
}
