//! Every email the product sends: one variant each, an HTML and a plain-text
//! template under `templates/email/`, and links built from `BASE_URL`.

use askama::Template;
use serde::{Deserialize, Serialize};
use url::Url;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "template", rename_all = "snake_case")]
pub enum MailTemplate {
    VerifyEmail {
        name: String,
        token: String,
    },
    PasswordReset {
        name: String,
        token: String,
    },
    Invitation {
        organization: String,
        inviter: String,
        role: String,
        token: String,
    },
    PaymentFailed {
        organization: String,
        amount: String,
        invoice_url: Option<String>,
    },
    TrialEnding {
        organization: String,
        /// The day the trial ends, as shown.
        ends: String,
    },
    TicketAssigned {
        name: String,
        ticket_id: i64,
        subject: String,
    },
    /// `frontdesk mail test`: proves the configuration end to end.
    Test,
}

pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// What a template shows: a greeting, paragraphs, one call to action.
pub struct EmailView<'a> {
    pub heading: &'a str,
    pub greeting: String,
    pub paragraphs: Vec<String>,
    pub action_label: &'a str,
    pub action_url: String,
    pub footnote: &'a str,
}

#[derive(Template)]
#[template(path = "email/message.html")]
struct HtmlEmail<'a> {
    v: &'a EmailView<'a>,
}

#[derive(Template)]
#[template(path = "email/message.txt")]
struct TextEmail<'a> {
    v: &'a EmailView<'a>,
}

fn link(base: &Url, path: &str, token: Option<&str>) -> String {
    let mut url = base.join(path).unwrap_or_else(|_| base.clone());
    if let Some(token) = token {
        url.query_pairs_mut().append_pair("token", token);
    }
    url.to_string()
}

fn hello(name: &str) -> String {
    if name.trim().is_empty() {
        "Hello,".to_string()
    } else {
        format!("Hello {},", name.trim())
    }
}

impl MailTemplate {
    /// Stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::VerifyEmail { .. } => "verify_email",
            Self::PasswordReset { .. } => "password_reset",
            Self::Invitation { .. } => "invitation",
            Self::PaymentFailed { .. } => "payment_failed",
            Self::TrialEnding { .. } => "trial_ending",
            Self::TicketAssigned { .. } => "ticket_assigned",
            Self::Test => "test",
        }
    }

    pub fn render(&self, base: &Url) -> Result<Rendered, askama::Error> {
        let (subject, view) = self.view(base);
        Ok(Rendered {
            subject,
            html: HtmlEmail { v: &view }.render()?,
            text: TextEmail { v: &view }.render()?,
        })
    }

    fn view(&self, base: &Url) -> (String, EmailView<'static>) {
        match self {
            Self::VerifyEmail { name, token } => (
                "Confirm your email address".into(),
                EmailView {
                    heading: "Confirm your email address",
                    greeting: hello(name),
                    paragraphs: vec![
                        "Welcome to Frontdesk. Confirm this address to finish setting up your account.".into(),
                        "The link works once and expires in 24 hours.".into(),
                    ],
                    action_label: "Confirm email address",
                    action_url: link(base, "/verify-email", Some(token)),
                    footnote: "If you did not create a Frontdesk account, you can ignore this email.",
                },
            ),
            Self::PasswordReset { name, token } => (
                "Reset your Frontdesk password".into(),
                EmailView {
                    heading: "Reset your password",
                    greeting: hello(name),
                    paragraphs: vec![
                        "Someone asked to reset the password of your Frontdesk account.".into(),
                        "The link works once and expires in one hour.".into(),
                    ],
                    action_label: "Choose a new password",
                    action_url: link(base, "/reset-password", Some(token)),
                    footnote: "If this was not you, ignore this email: your password stays as it is.",
                },
            ),
            Self::Invitation {
                organization,
                inviter,
                role,
                token,
            } => (
                format!("{inviter} invited you to {organization} on Frontdesk"),
                EmailView {
                    heading: "You have been invited",
                    greeting: "Hello,".into(),
                    paragraphs: vec![format!(
                        "{inviter} invited you to join {organization} on Frontdesk as {role}."
                    )],
                    action_label: "Accept the invitation",
                    action_url: link(base, "/invitations/accept", Some(token)),
                    footnote: "The invitation expires in 7 days. If you were not expecting it, ignore this email.",
                },
            ),
            Self::PaymentFailed {
                organization,
                amount,
                invoice_url,
            } => (
                format!("Payment failed for {organization}"),
                EmailView {
                    heading: "We could not take your payment",
                    greeting: "Hello,".into(),
                    paragraphs: vec![
                        format!("The payment of {amount} for {organization}'s Frontdesk subscription failed."),
                        "Update your payment method to keep your plan; we will retry automatically.".into(),
                    ],
                    action_label: "Update payment method",
                    action_url: invoice_url
                        .clone()
                        .unwrap_or_else(|| link(base, "/app/billing", None)),
                    footnote: "You receive this because you own or administer this organization.",
                },
            ),
            Self::TrialEnding { organization, ends } => (
                format!("{organization}'s Frontdesk trial ends on {ends}"),
                EmailView {
                    heading: "Your trial ends soon",
                    greeting: "Hello,".into(),
                    paragraphs: vec![
                        format!("The trial of {organization}'s Frontdesk subscription ends on {ends}."),
                        "Check your payment method so the plan continues without interruption.".into(),
                    ],
                    action_label: "Review billing",
                    action_url: link(base, "/app/billing", None),
                    footnote: "You receive this because you own this organization.",
                },
            ),
            Self::TicketAssigned {
                name,
                ticket_id,
                subject,
            } => (
                format!("Ticket #{ticket_id} assigned to you: {subject}"),
                EmailView {
                    heading: "A ticket was assigned to you",
                    greeting: hello(name),
                    paragraphs: vec![format!("Ticket #{ticket_id}, \u{201c}{subject}\u{201d}, is now yours.")],
                    action_label: "Open the ticket",
                    action_url: link(base, &format!("/app/tickets/{ticket_id}"), None),
                    footnote: "You receive this because you are an agent in this organization.",
                },
            ),
            Self::Test => (
                "Frontdesk test email".into(),
                EmailView {
                    heading: "Email works",
                    greeting: "Hello,".into(),
                    paragraphs: vec!["This is a test email from `frontdesk mail test`. Your mail settings work.".into()],
                    action_label: "Open Frontdesk",
                    action_url: link(base, "/", None),
                    footnote: "Sent by an operator to check the configuration.",
                },
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MailTemplate;

    #[test]
    fn links_come_from_base_url_and_text_is_escaped_in_html() {
        let base = url::Url::parse("https://support.example.com").unwrap();
        let mail = MailTemplate::Invitation {
            organization: "<script>Acme</script>".into(),
            inviter: "Ana".into(),
            role: "agent".into(),
            token: "tok en/1".into(),
        };
        let r = mail.render(&base).unwrap();
        assert!(
            r.html
                .contains("https://support.example.com/invitations/accept?token=tok+en%2F1")
        );
        assert!(
            r.text
                .contains("https://support.example.com/invitations/accept?token=tok+en%2F1")
        );
        assert!(!r.html.contains("<script>"), "{}", r.html);
        assert!(
            r.text.contains("<script>Acme</script>"),
            "plain text is not HTML-escaped"
        );
    }
}
