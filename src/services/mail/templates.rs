//! Every email the product sends. A [`MailTemplate`] is what a mail job stores;
//! rendering turns it into one view struct per email whose wording lives in
//! its own folder under `templates/email/` (an HTML and a plain-text part),
//! with links built from `BASE_URL`.

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
    /// To the owners when visitors used up the month's message allowance.
    AllowanceReached {
        organization: String,
        plan: String,
        /// The allowance, as shown (`10,000`).
        limit: String,
    },
    TicketAssigned {
        name: String,
        ticket_id: i64,
        subject: String,
        /// The ticket's organization, so the link opens it whichever one the
        /// person has open (absent in emails queued by older versions).
        #[serde(default)]
        organization_id: Option<i64>,
    },
    /// To the other members when an owner deletes the organization.
    OrganizationDeleted {
        organization: String,
        by: String,
    },
    /// To the old address when an account's email changes: its owner hears
    /// of it even if it was not them.
    EmailChanged {
        name: String,
        /// The new address, partly hidden (`m•••@example.com`).
        new_email: String,
    },
    /// `frontdesk mail test`: proves the configuration end to end.
    Test,
}

impl MailTemplate {
    /// The notice for `old`'s owner that the account now answers to `new`.
    pub fn email_changed(name: &str, new: &crate::domain::Email) -> Self {
        let shown = match new.as_str().split_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}\u{2022}\u{2022}\u{2022}@{domain}")
            }
            None => new.as_str().to_string(),
        };
        Self::EmailChanged {
            name: name.to_string(),
            new_email: shown,
        }
    }
}

pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// One email's askama pair: `templates/email/<name>/body.html` and `body.txt`,
/// both extending the shared layout, which draws the button from `m.link`.
macro_rules! email_parts {
    ($view:ty, $html:ident = $html_path:tt, $text:ident = $text_path:tt) => {
        #[derive(Template)]
        #[template(path = $html_path)]
        struct $html<'a> {
            m: &'a $view,
        }

        #[derive(Template)]
        #[template(path = $text_path)]
        struct $text<'a> {
            m: &'a $view,
        }
    };
}

struct VerifyEmail<'a> {
    name: &'a str,
    link: String,
}
email_parts!(
    VerifyEmail<'a>,
    VerifyEmailHtml = "email/verify_email/body.html",
    VerifyEmailText = "email/verify_email/body.txt"
);

struct PasswordReset<'a> {
    name: &'a str,
    link: String,
}
email_parts!(
    PasswordReset<'a>,
    PasswordResetHtml = "email/password_reset/body.html",
    PasswordResetText = "email/password_reset/body.txt"
);

struct Invitation<'a> {
    organization: &'a str,
    inviter: &'a str,
    role: &'a str,
    link: String,
}
email_parts!(
    Invitation<'a>,
    InvitationHtml = "email/invitation/body.html",
    InvitationText = "email/invitation/body.txt"
);

struct PaymentFailed<'a> {
    organization: &'a str,
    amount: &'a str,
    link: String,
}
email_parts!(
    PaymentFailed<'a>,
    PaymentFailedHtml = "email/payment_failed/body.html",
    PaymentFailedText = "email/payment_failed/body.txt"
);

struct TrialEnding<'a> {
    organization: &'a str,
    ends: &'a str,
    link: String,
}
email_parts!(
    TrialEnding<'a>,
    TrialEndingHtml = "email/trial_ending/body.html",
    TrialEndingText = "email/trial_ending/body.txt"
);

struct AllowanceReached<'a> {
    organization: &'a str,
    plan: &'a str,
    limit: &'a str,
    link: String,
}
email_parts!(
    AllowanceReached<'a>,
    AllowanceReachedHtml = "email/allowance_reached/body.html",
    AllowanceReachedText = "email/allowance_reached/body.txt"
);

struct TicketAssigned<'a> {
    name: &'a str,
    ticket_id: i64,
    subject: &'a str,
    link: String,
}
email_parts!(
    TicketAssigned<'a>,
    TicketAssignedHtml = "email/ticket_assigned/body.html",
    TicketAssignedText = "email/ticket_assigned/body.txt"
);

struct OrganizationDeleted<'a> {
    organization: &'a str,
    by: &'a str,
    link: String,
}
email_parts!(
    OrganizationDeleted<'a>,
    OrganizationDeletedHtml = "email/organization_deleted/body.html",
    OrganizationDeletedText = "email/organization_deleted/body.txt"
);

struct EmailChanged<'a> {
    name: &'a str,
    new_email: &'a str,
    link: String,
}
email_parts!(
    EmailChanged<'a>,
    EmailChangedHtml = "email/email_changed/body.html",
    EmailChangedText = "email/email_changed/body.txt"
);

struct TestEmail {
    link: String,
}
email_parts!(
    TestEmail,
    TestEmailHtml = "email/test/body.html",
    TestEmailText = "email/test/body.txt"
);

fn link(base: &Url, path: &str, token: Option<&str>) -> String {
    let mut url = base.join(path).unwrap_or_else(|_| base.clone());
    if let Some(token) = token {
        url.query_pairs_mut().append_pair("token", token);
    }
    url.to_string()
}

fn parts(
    subject: String,
    html: impl Template,
    text: impl Template,
) -> Result<Rendered, askama::Error> {
    Ok(Rendered {
        subject,
        html: html.render()?,
        text: text.render()?,
    })
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
            Self::AllowanceReached { .. } => "allowance_reached",
            Self::TicketAssigned { .. } => "ticket_assigned",
            Self::OrganizationDeleted { .. } => "organization_deleted",
            Self::EmailChanged { .. } => "email_changed",
            Self::Test => "test",
        }
    }

    pub fn render(&self, base: &Url) -> Result<Rendered, askama::Error> {
        match self {
            Self::VerifyEmail { name, token } => {
                let m = VerifyEmail {
                    name: name.trim(),
                    link: link(base, "/verify-email", Some(token)),
                };
                parts(
                    "Confirm your email address".into(),
                    VerifyEmailHtml { m: &m },
                    VerifyEmailText { m: &m },
                )
            }
            Self::PasswordReset { name, token } => {
                let m = PasswordReset {
                    name: name.trim(),
                    link: link(base, "/reset-password", Some(token)),
                };
                parts(
                    "Reset your Frontdesk password".into(),
                    PasswordResetHtml { m: &m },
                    PasswordResetText { m: &m },
                )
            }
            Self::Invitation {
                organization,
                inviter,
                role,
                token,
            } => {
                let m = Invitation {
                    organization,
                    inviter,
                    role,
                    link: link(base, "/invitations/accept", Some(token)),
                };
                parts(
                    format!("{inviter} invited you to {organization} on Frontdesk"),
                    InvitationHtml { m: &m },
                    InvitationText { m: &m },
                )
            }
            Self::PaymentFailed {
                organization,
                amount,
                invoice_url,
            } => {
                let m = PaymentFailed {
                    organization,
                    amount,
                    link: invoice_url
                        .clone()
                        .unwrap_or_else(|| link(base, "/app/billing", None)),
                };
                parts(
                    format!("Payment failed for {organization}"),
                    PaymentFailedHtml { m: &m },
                    PaymentFailedText { m: &m },
                )
            }
            Self::TrialEnding { organization, ends } => {
                let m = TrialEnding {
                    organization,
                    ends,
                    link: link(base, "/app/billing", None),
                };
                parts(
                    format!("{organization}'s Frontdesk trial ends on {ends}"),
                    TrialEndingHtml { m: &m },
                    TrialEndingText { m: &m },
                )
            }
            Self::AllowanceReached {
                organization,
                plan,
                limit,
            } => {
                let m = AllowanceReached {
                    organization,
                    plan,
                    limit,
                    link: link(base, "/app/billing", None),
                };
                parts(
                    format!("{organization} has used this month's Frontdesk messages"),
                    AllowanceReachedHtml { m: &m },
                    AllowanceReachedText { m: &m },
                )
            }
            Self::TicketAssigned {
                name,
                ticket_id,
                subject,
                organization_id,
            } => {
                let path = match organization_id {
                    Some(org) => format!("/app/tickets/{ticket_id}?org={org}"),
                    None => format!("/app/tickets/{ticket_id}"),
                };
                let m = TicketAssigned {
                    name: name.trim(),
                    ticket_id: *ticket_id,
                    subject,
                    link: link(base, &path, None),
                };
                parts(
                    format!("Ticket #{ticket_id} assigned to you: {subject}"),
                    TicketAssignedHtml { m: &m },
                    TicketAssignedText { m: &m },
                )
            }
            Self::OrganizationDeleted { organization, by } => {
                let m = OrganizationDeleted {
                    organization,
                    by,
                    link: link(base, "/app", None),
                };
                parts(
                    format!("{organization} was deleted from Frontdesk"),
                    OrganizationDeletedHtml { m: &m },
                    OrganizationDeletedText { m: &m },
                )
            }
            Self::EmailChanged { name, new_email } => {
                let m = EmailChanged {
                    name: name.trim(),
                    new_email,
                    link: link(base, "/login", None),
                };
                parts(
                    "Your Frontdesk email address was changed".into(),
                    EmailChangedHtml { m: &m },
                    EmailChangedText { m: &m },
                )
            }
            Self::Test => {
                let m = TestEmail {
                    link: link(base, "/", None),
                };
                parts(
                    "Frontdesk test email".into(),
                    TestEmailHtml { m: &m },
                    TestEmailText { m: &m },
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MailTemplate;

    #[test]
    fn the_email_changed_notice_hides_most_of_the_new_address() {
        let new = crate::domain::Email::parse("Maria.New@Example.com").unwrap();
        let mail = MailTemplate::email_changed("Maria", &new);
        let r = mail
            .render(&url::Url::parse("https://support.example.com").unwrap())
            .unwrap();
        assert!(
            r.text.contains("m\u{2022}\u{2022}\u{2022}@example.com"),
            "{}",
            r.text
        );
        assert!(!r.text.contains("maria.new@"), "{}", r.text);
        assert!(r.html.contains("https://support.example.com/login"));
    }

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

    #[test]
    fn every_email_has_both_parts_with_its_link_and_wording() {
        let base = url::Url::parse("https://support.example.com/").unwrap();
        let cases = [
            (
                MailTemplate::VerifyEmail {
                    name: " Ana ".into(),
                    token: "t1".into(),
                },
                "/verify-email?token=t1",
                "Hello Ana,",
            ),
            (
                MailTemplate::PasswordReset {
                    name: String::new(),
                    token: "t2".into(),
                },
                "/reset-password?token=t2",
                "Hello,",
            ),
            (
                MailTemplate::PaymentFailed {
                    organization: "Acme".into(),
                    amount: "€29.00".into(),
                    invoice_url: None,
                },
                "/app/billing",
                "€29.00",
            ),
            (
                MailTemplate::TrialEnding {
                    organization: "Acme".into(),
                    ends: "3 December 2026".into(),
                },
                "/app/billing",
                "3 December 2026",
            ),
            (
                MailTemplate::AllowanceReached {
                    organization: "Acme".into(),
                    plan: "Free".into(),
                    limit: "500".into(),
                },
                "/app/billing",
                "500",
            ),
            (
                MailTemplate::TicketAssigned {
                    name: "Bo".into(),
                    ticket_id: 42,
                    subject: "Broken chain".into(),
                    organization_id: Some(7),
                },
                "/app/tickets/42?org=7",
                "Broken chain",
            ),
            (
                MailTemplate::OrganizationDeleted {
                    organization: "Acme".into(),
                    by: "Ana".into(),
                },
                "/app",
                "Ana deleted",
            ),
            (
                MailTemplate::Test,
                "https://support.example.com/",
                "frontdesk mail test",
            ),
        ];
        for (mail, path, wording) in cases {
            let r = mail.render(&base).unwrap();
            let kind = mail.kind();
            assert!(!r.subject.is_empty(), "{kind}");
            for (part, body) in [("html", &r.html), ("text", &r.text)] {
                assert!(body.contains(path), "{kind} {part} lacks {path}: {body}");
                assert!(
                    body.contains(wording),
                    "{kind} {part} lacks {wording}: {body}"
                );
                assert!(
                    !body.contains("{{") && !body.contains("{%"),
                    "{kind} {part}"
                );
            }
            assert!(r.html.starts_with("<!DOCTYPE html>"), "{kind}");
            assert!(!r.text.contains('<'), "{kind}: the text part has no markup");
        }
    }
}
