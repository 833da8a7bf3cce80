//! A `ReminderEmail` as a MIME message (multipart/alternative: text, then HTML), shared by
//! both transports so the file sink shows exactly what SMTP would send.

use enrollstream_ports::mailer::{MailError, ReminderEmail};
use lettre::message::{Mailbox, MultiPart};
use lettre::Message;
use std::time::SystemTime;

pub(crate) fn build(email: &ReminderEmail) -> Result<Message, MailError> {
    // A bad sender is our configuration: it may be fixed, so the attempt is not consumed.
    let from: Mailbox = email
        .from
        .parse()
        .map_err(|e| MailError::Transient(format!("sender {:?} is invalid: {e}", email.from)))?;
    // A bad recipient never becomes valid by retrying.
    let to: Mailbox = email
        .to
        .parse()
        .map_err(|e| MailError::Permanent(format!("recipient {:?} is invalid: {e}", email.to)))?;
    Message::builder()
        .from(from)
        .to(to)
        .subject(email.subject.clone())
        .message_id(Some(email.message_id.clone()))
        .date(SystemTime::from(email.date))
        .multipart(MultiPart::alternative_plain_html(
            email.text.clone(),
            email.html.clone(),
        ))
        .map_err(|e| MailError::Permanent(format!("cannot build the message: {e}")))
}
