//! The mailers against real servers on 127.0.0.1: aiosmtpd from the test bed for delivery, and
//! tiny scripted TCP servers for the ways a server can misbehave (silence, stalls, 5xx).

use chrono::{DateTime, Utc};
use enrollstream_domain::events::{Applicant, Broker, Submitter};
use enrollstream_domain::reminder::{self, Reminder, ReminderStatus, Submission};
use enrollstream_mail::{
    DirectoryMailer, MailConfig, ReminderTemplates, SmtpConfig, SmtpMailer, SmtpTls,
};
use enrollstream_ports::mailer::{
    MailError, Mailer, ReminderComposer, ReminderDraft, ReminderEmail,
};
use enrollstream_testkit::testbed::Smtp;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A guard against a hanging test, far above any step timeout used here; not an assertion
/// about speed.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn at() -> DateTime<Utc> {
    "2026-02-03T10:00:00Z".parse().unwrap()
}

fn reminder(applicant_name: &str) -> Reminder {
    Reminder {
        application_id: "APP-42".into(),
        status: ReminderStatus::AwaitingSignature,
        applicant: Some(Applicant {
            name: applicant_name.into(),
            email: "jane@example.com".into(),
        }),
        product: Some("dental-basic".into()),
        submission: Some(Submission {
            by: Submitter::Broker {
                broker: Broker {
                    id: "B-7".into(),
                    name: "Acme Brokers".into(),
                    email: "broker@acme.test".into(),
                },
            },
            at: at(),
        }),
        signature_obtained: false,
        closed: None,
        attempts: 1,
        last_sent_at: None,
        next_due_at: Some(at()),
        exhausted_at: None,
        failures: 0,
        last_error: None,
        applied_event_ids: vec![],
        updated_at: at(),
    }
}

fn email(attempt: u32) -> ReminderEmail {
    let templates = ReminderTemplates::new(&MailConfig::default()).expect("default templates");
    let r = reminder("Jane <b>Doe</b> & Co");
    templates
        .compose(&ReminderDraft {
            reminder: &r,
            attempt,
            max_attempts: 5,
            message_id: &reminder::message_id(&r.application_id, attempt),
            date: at(),
        })
        .expect("compose")
}

fn plain(port: u16, timeout: Duration) -> SmtpMailer {
    SmtpMailer::new(&SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        tls: SmtpTls::None,
        timeout,
        ..SmtpConfig::default()
    })
    .expect("mailer")
}

async fn send(mailer: &SmtpMailer, email: &ReminderEmail) -> Result<(), MailError> {
    tokio::time::timeout(HANG_GUARD, mailer.send(email))
        .await
        .expect("the send ended on its own step timeouts")
}

#[tokio::test]
async fn delivers_text_and_html_with_the_deterministic_message_id() {
    let smtp = Smtp::start().expect("start aiosmtpd");
    let mailer = plain(smtp.port(), Duration::from_secs(10));
    let mail = email(2);
    send(&mailer, &mail).await.expect("delivered");
    let got = smtp
        .wait_for_messages(1, Duration::from_secs(30))
        .await
        .expect("one mail");
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.message_id(), Some("<reminder-APP-42-2@enrollstream>"));
    assert_eq!(m.to(), Some("\"Acme Brokers\" <broker@acme.test>"));
    assert_eq!(
        m.from(),
        Some("Enrollstream <reminders@enrollstream.localhost>")
    );
    assert_eq!(
        m.subject(),
        Some("Signature needed: application APP-42 (reminder 2 of 5)")
    );
    let text = m.text.as_deref().expect("a text part");
    assert!(
        text.contains("APP-42 for dental-basic of Jane <b>Doe</b> & Co"),
        "{text}"
    );
    assert!(text.contains("reminder 2 of 5"), "{text}");
    let html = m.html.as_deref().expect("an HTML part");
    assert!(
        html.contains("Jane &lt;b&gt;Doe&lt;&#x2f;b&gt; &amp; Co"),
        "the applicant's name is escaped in HTML: {html}"
    );
    assert!(html.contains("<strong>APP-42</strong>"), "{html}");
}

#[tokio::test]
async fn the_last_reminder_says_so() {
    let mail = email(5);
    assert!(mail.text.contains("It is the last one"), "{}", mail.text);
    assert!(!email(4).text.contains("It is the last one"));
}

#[tokio::test]
async fn a_server_that_never_greets_is_a_transient_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and keeps the connection open without a word.
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        std::future::pending::<()>().await;
        drop(socket);
    });
    let err = send(&plain(port, Duration::from_millis(300)), &email(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MailError::Transient(t) if t.starts_with("connect: no answer")),
        "{err:?}"
    );
    server.abort();
}

/// A server that greets and answers EHLO, then answers the next commands with `after_ehlo`.
async fn scripted(after_ehlo: &'static [&'static str]) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"220 scripted ESMTP\r\n").await.unwrap();
        let ehlo = lines.next_line().await.unwrap().unwrap();
        assert!(ehlo.starts_with("EHLO"), "{ehlo}");
        write.write_all(b"250 scripted\r\n").await.unwrap();
        for reply in after_ehlo {
            let _command = lines.next_line().await.unwrap();
            write.write_all(reply.as_bytes()).await.unwrap();
        }
        // lettre says QUIT after a refusal and waits for the answer; anything else meets
        // silence, connection open.
        if let Ok(Some(command)) = lines.next_line().await {
            if command == "QUIT" {
                write.write_all(b"221 bye\r\n").await.unwrap();
                return;
            }
        }
        std::future::pending::<()>().await;
    });
    (port, task)
}

#[tokio::test]
async fn a_server_that_stalls_mid_conversation_is_a_transient_timeout() {
    // MAIL FROM is read and never answered.
    let (port, server) = scripted(&[]).await;
    let err = send(&plain(port, Duration::from_millis(300)), &email(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MailError::Transient(t) if t.starts_with("send: no answer")),
        "{err:?}"
    );
    server.abort();
}

#[tokio::test]
async fn a_refused_recipient_is_permanent() {
    let (port, server) = scripted(&["250 sender ok\r\n", "550 5.1.1 no such mailbox\r\n"]).await;
    let err = send(&plain(port, Duration::from_secs(10)), &email(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MailError::Permanent(t) if t.contains("no such mailbox")),
        "{err:?}"
    );
    server.abort();
}

#[tokio::test]
async fn a_busy_server_is_transient() {
    let (port, server) = scripted(&["451 4.3.0 try again later\r\n"]).await;
    let err = send(&plain(port, Duration::from_secs(10)), &email(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MailError::Transient(t) if t.contains("try again")),
        "{err:?}"
    );
    server.abort();
}

#[tokio::test]
async fn no_server_is_transient() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = send(&plain(port, Duration::from_secs(5)), &email(1))
        .await
        .unwrap_err();
    assert!(matches!(err, MailError::Transient(_)), "{err:?}");
}

#[tokio::test]
async fn the_directory_sink_overwrites_a_resent_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let sink = DirectoryMailer::open(&dir.path().join("outbox-mail")).unwrap();
    sink.send(&email(1)).await.unwrap();
    sink.send(&email(1)).await.unwrap();
    sink.send(&email(2)).await.unwrap();
    let mut names: Vec<String> = std::fs::read_dir(sink.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "reminder-APP-42-1@enrollstream.eml",
            "reminder-APP-42-2@enrollstream.eml"
        ]
    );
    let raw = std::fs::read_to_string(sink.path_of("<reminder-APP-42-2@enrollstream>")).unwrap();
    assert!(
        raw.contains("Message-ID: <reminder-APP-42-2@enrollstream>"),
        "{raw}"
    );
    assert!(raw.contains("multipart/alternative"), "{raw}");
}

#[test]
fn broken_templates_fail_at_start_up() {
    let config = MailConfig {
        subject: "Reminder for {{ aplication_id }}".into(),
        ..MailConfig::default()
    };
    let err = ReminderTemplates::new(&config)
        .err()
        .expect("a typo is refused");
    assert!(err.to_string().contains("subject.txt"), "{err}");
    let config = MailConfig {
        from: "not a mailbox".into(),
        ..MailConfig::default()
    };
    assert!(ReminderTemplates::new(&config).is_err());
}

#[test]
fn operators_can_replace_the_bodies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("reminder.txt"),
        "Sign {{ application_id }}, {{ broker.name }}!",
    )
    .unwrap();
    let templates = ReminderTemplates::new(&MailConfig {
        templates_dir: Some(dir.path().to_path_buf()),
        ..MailConfig::default()
    })
    .unwrap();
    let r = reminder("Jane");
    let mail = templates
        .compose(&ReminderDraft {
            reminder: &r,
            attempt: 1,
            max_attempts: 5,
            message_id: "<m@x>",
            date: at(),
        })
        .unwrap();
    assert_eq!(mail.text, "Sign APP-42, Acme Brokers!");
    assert!(
        mail.html.contains("<strong>APP-42</strong>"),
        "the built-in HTML stays"
    );
}

/// A server that offers AUTH, records the AUTH line and answers it with `auth_reply`; on
/// success it takes the message. Returns the commands it saw.
async fn auth_server(auth_reply: &'static str) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        let mut seen = Vec::new();
        write.write_all(b"220 scripted ESMTP\r\n").await.unwrap();
        while let Ok(Some(line)) = lines.next_line().await {
            let reply: &[u8] = match line.split(' ').next().unwrap_or_default() {
                "EHLO" => b"250-scripted\r\n250 AUTH PLAIN LOGIN\r\n",
                "AUTH" => auth_reply.as_bytes(),
                "MAIL" | "RCPT" => b"250 ok\r\n",
                "DATA" => {
                    seen.push(line);
                    write.write_all(b"354 go ahead\r\n").await.unwrap();
                    while let Ok(Some(body)) = lines.next_line().await {
                        if body == "." {
                            break;
                        }
                    }
                    write.write_all(b"250 queued\r\n").await.unwrap();
                    continue;
                }
                "QUIT" => {
                    seen.push(line);
                    write.write_all(b"221 bye\r\n").await.unwrap();
                    break;
                }
                _ => b"500 what?\r\n",
            };
            seen.push(line);
            write.write_all(reply).await.unwrap();
        }
        seen
    });
    (port, task)
}

fn with_credentials(port: u16) -> SmtpMailer {
    SmtpMailer::new(&SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        tls: SmtpTls::None,
        username: Some("reminders".into()),
        password: Some(enrollstream_mail::Secret::new("hunter2")),
        timeout: Duration::from_secs(10),
        ..SmtpConfig::default()
    })
    .expect("mailer")
}

#[tokio::test]
async fn authenticates_before_sending() {
    let (port, server) = auth_server("235 2.7.0 authenticated\r\n").await;
    send(&with_credentials(port), &email(1))
        .await
        .expect("sent");
    let seen = server.await.unwrap();
    let verbs: Vec<&str> = seen.iter().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(verbs, ["EHLO", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"]);
    // PLAIN: base64 of "\0reminders\0hunter2".
    assert_eq!(seen[1], "AUTH PLAIN AHJlbWluZGVycwBodW50ZXIy");
}

#[tokio::test]
async fn refused_credentials_are_transient_and_send_nothing() {
    let (port, server) = auth_server("535 5.7.8 bad credentials\r\n").await;
    let err = send(&with_credentials(port), &email(1)).await.unwrap_err();
    // Our configuration, not the broker's address: retried, no attempt consumed.
    assert!(
        matches!(&err, MailError::Transient(t) if t.starts_with("auth")),
        "{err:?}"
    );
    let seen = server.await.unwrap();
    assert!(!seen.iter().any(|l| l.starts_with("MAIL")), "{seen:?}");
}
