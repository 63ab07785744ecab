//! Agent replies are Markdown; staff read them as formatted text. Replies can
//! quote documents and visitors, so nothing in them may become markup of its
//! own: raw HTML is shown as text, only web and mail links survive (opening in
//! a new tab, without the referrer), and images become links instead of being
//! fetched by the staff member's browser.

use pulldown_cmark::{CowStr, Event, LinkType, Options, Parser, Tag, TagEnd, html};

/// Renders Markdown to HTML that is safe to put into a page as is.
pub fn to_safe_html(markdown: &str) -> String {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TABLES);
    // Whether each open link or image was kept, so its end matches its start.
    let mut open: Vec<bool> = Vec::new();
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            ..
        })
        | Event::Start(Tag::Image {
            link_type,
            dest_url,
            ..
        }) => {
            let href = if link_type == LinkType::Email {
                Some(format!("mailto:{dest_url}"))
            } else {
                safe_url(&dest_url).map(str::to_string)
            };
            open.push(href.is_some());
            match href {
                Some(url) => Event::Html(CowStr::from(format!(
                    "<a href=\"{}\" target=\"_blank\" rel=\"noopener noreferrer nofollow\">",
                    escape_attribute(&url)
                ))),
                None => Event::Text(CowStr::Borrowed("")),
            }
        }
        Event::End(TagEnd::Link) | Event::End(TagEnd::Image) => {
            if open.pop().unwrap_or(false) {
                Event::Html(CowStr::Borrowed("</a>"))
            } else {
                Event::Text(CowStr::Borrowed(""))
            }
        }
        other => other,
    });
    let mut out = String::with_capacity(markdown.len() * 5 / 4);
    html::push_html(&mut out, events);
    out
}

/// `http`, `https` and `mailto` only: `javascript:`, `data:` and relative links
/// into the admin itself are dropped (their text stays).
fn safe_url(url: &str) -> Option<&str> {
    let url = url.trim();
    let scheme = url.split_once(':')?.0.to_ascii_lowercase();
    matches!(scheme.as_str(), "http" | "https" | "mailto").then_some(url)
}

fn escape_attribute(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::to_safe_html;

    #[test]
    fn formats_markdown() {
        let html = to_safe_html("**Returns** take *30 days* [1].\n\n- one\n- `two`");
        assert!(html.contains("<strong>Returns</strong>"), "{html}");
        assert!(html.contains("<em>30 days</em> [1]."), "{html}");
        assert!(html.contains("<li><code>two</code></li>"), "{html}");
    }

    #[test]
    fn raw_html_is_text() {
        let html = to_safe_html("Hi <script>alert(1)</script>\n\n<img src=x onerror=alert(1)>");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn only_web_and_mail_links_survive() {
        let html = to_safe_html(
            "[ok](https://example.com/a?b=1&c=2) [bad](javascript:alert(1)) \
             [inside](/app/members) ![pixel](https://tracker.example/p.gif) <mail@example.com>",
        );
        assert!(
            html.contains(
                "<a href=\"https://example.com/a?b=1&amp;c=2\" target=\"_blank\" rel=\"noopener noreferrer nofollow\">ok</a>"
            ),
            "{html}"
        );
        assert!(!html.contains("javascript"), "{html}");
        assert!(html.contains("bad") && html.contains("inside"), "{html}");
        assert!(!html.contains("href=\"/app"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("href=\"mailto:mail@example.com\""), "{html}");
    }
}
