use std::path::{Path, PathBuf};

use anyhow::Context;
use mailparse::ParsedMail;

/// One message as the SMTP server stored it.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub path: PathBuf,
    /// The message exactly as stored, headers and body.
    pub raw: String,
    /// Headers in order, values decoded (RFC 2047) and unfolded.
    pub headers: Vec<(String, String)>,
    /// The first text/plain part, decoded.
    pub text: Option<String>,
    /// The first text/html part, decoded.
    pub html: Option<String>,
}

impl ReceivedMail {
    pub(crate) fn read(path: &Path) -> anyhow::Result<ReceivedMail> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let parsed = mailparse::parse_mail(&bytes)
            .with_context(|| format!("parsing the mail in {}", path.display()))?;
        Ok(ReceivedMail {
            path: path.to_path_buf(),
            raw: String::from_utf8_lossy(&bytes).into_owned(),
            headers: parsed
                .headers
                .iter()
                .map(|header| (header.get_key(), header.get_value()))
                .collect(),
            text: first_body(&parsed, "text/plain"),
            html: first_body(&parsed, "text/html"),
        })
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn message_id(&self) -> Option<&str> {
        self.header("Message-ID")
    }

    pub fn from(&self) -> Option<&str> {
        self.header("From")
    }

    pub fn to(&self) -> Option<&str> {
        self.header("To")
    }

    pub fn subject(&self) -> Option<&str> {
        self.header("Subject")
    }
}

fn first_body(part: &ParsedMail, mimetype: &str) -> Option<String> {
    if part.subparts.is_empty() {
        return (part.ctype.mimetype == mimetype)
            .then(|| part.get_body().ok())
            .flatten();
    }
    part.subparts
        .iter()
        .find_map(|sub| first_body(sub, mimetype))
}
