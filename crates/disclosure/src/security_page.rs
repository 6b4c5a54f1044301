//! The body of the public security page, as an escaped HTML fragment the web
//! UI places inside its own layout (which supplies `<h1>`, styles and the
//! accessibility scaffolding). Plain words, headings from `<h2>` down, no
//! scripts, no colour-only meaning.

use time::Date;

use crate::support::SupportState;
use crate::vendor::VendorFile;

/// Escapes text for HTML; control characters become spaces.
pub(crate) fn h(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn link(href: &str) -> String {
    let text = href.strip_prefix("mailto:").unwrap_or(href);
    format!("<a href=\"{}\">{}</a>", h(href), h(text))
}

/// The fragment for firmware `firmware_version` on `today`.
/// `s` escaped for HTML text, for the daemon's additions to the page.
pub fn escape(s: &str) -> String {
    h(s)
}

pub fn html_section(vendor: &VendorFile, firmware_version: &str, today: Date) -> String {
    let d = &vendor.disclosure;
    let p = &vendor.product;
    let status = vendor.support_status(today);
    let mut o = String::new();
    o.push_str("<section aria-labelledby=\"report-vulnerability\">\n");
    o.push_str("<h2 id=\"report-vulnerability\">Report a security problem</h2>\n");
    o.push_str(&format!(
        "<p>If you think you have found a security problem in this device, please tell {}:</p>\n<ul>\n",
        h(&vendor.vendor.name)
    ));
    for c in &d.contacts {
        o.push_str(&format!("<li>{}</li>\n", link(c)));
    }
    o.push_str("</ul>\n");
    o.push_str(&format!(
        "<p>How reports are handled: {}.</p>\n",
        link(&d.policy_url)
    ));
    o.push_str("<h3>What happens next</h3>\n<ul>\n");
    o.push_str(&format!("<li>{}</li>\n", h(&d.acknowledgement)));
    o.push_str(&format!("<li>{}</li>\n", h(&d.status_updates)));
    o.push_str("</ul>\n</section>\n");

    o.push_str("<section aria-labelledby=\"support-period\">\n");
    o.push_str("<h2 id=\"support-period\">Security updates</h2>\n");
    let class = match status.state {
        SupportState::Inside => "support-inside",
        SupportState::EndingSoon => "support-ending-soon",
        SupportState::Ended => "support-ended",
    };
    o.push_str(&format!(
        "<p class=\"{class}\"><strong>{}.</strong> {}</p>\n",
        h(status.headline()),
        h(&status.sentence(&vendor.vendor.name))
    ));
    o.push_str(&format!(
        "<p>The support period is published at {}.</p>\n</section>\n",
        link(&vendor.support.url)
    ));

    o.push_str("<section aria-labelledby=\"this-device\">\n");
    o.push_str("<h2 id=\"this-device\">This device</h2>\n<dl>\n");
    for (k, v) in [
        ("Product", p.name.as_str()),
        ("Model", p.model.as_str()),
        ("Hardware revision", p.hardware_revision.as_str()),
        ("Firmware version", firmware_version),
        ("Made by", vendor.vendor.name.as_str()),
    ] {
        o.push_str(&format!("<dt>{}</dt><dd>{}</dd>\n", h(k), h(v)));
    }
    o.push_str("</dl>\n</section>\n");
    o
}
