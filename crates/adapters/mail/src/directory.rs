//! The directory sink: one `.eml` file per email, named after its Message-ID, so a resend of
//! the same attempt overwrites its file instead of adding one (as a mail system drops the
//! duplicate). Files are written to a temporary name and renamed: a reader never sees half.

use async_trait::async_trait;
use enrollstream_ports::mailer::{MailError, Mailer, ReminderEmail};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::message;

pub struct DirectoryMailer {
    dir: PathBuf,
}

impl DirectoryMailer {
    /// Creates `dir` if needed.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file an email with `message_id` is written to.
    pub fn path_of(&self, message_id: &str) -> PathBuf {
        self.dir.join(file_name(message_id))
    }
}

/// `<reminder-A-1-2@enrollstream>` → `reminder-A-1-2@enrollstream.eml`. Message-IDs built by
/// the domain are already file-name safe; anything else is replaced rather than trusted.
fn file_name(message_id: &str) -> String {
    let core = message_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    let safe: String = core
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._=@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.eml")
}

#[async_trait]
impl Mailer for DirectoryMailer {
    async fn send(&self, email: &ReminderEmail) -> Result<(), MailError> {
        let bytes = message::build(email)?.formatted();
        let target = self.path_of(&email.message_id);
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || write_atomically(&dir, &target, &bytes))
            .await
            .map_err(|e| MailError::Transient(format!("mail sink task failed: {e}")))?
            .map_err(|e| {
                MailError::Transient(format!("cannot write to {}: {e}", dir_name(&self.dir)))
            })
    }

    fn name(&self) -> &'static str {
        "directory"
    }
}

fn dir_name(dir: &Path) -> String {
    dir.display().to_string()
}

fn write_atomically(dir: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = target.with_extension(format!("eml.{}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_the_message_id() {
        assert_eq!(
            file_name("<reminder-A-1-2@enrollstream>"),
            "reminder-A-1-2@enrollstream.eml"
        );
        assert_eq!(file_name("<../x/y>"), ".._x_y.eml");
    }
}
