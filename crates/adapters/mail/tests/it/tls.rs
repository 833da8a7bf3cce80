//! STARTTLS and implicit TLS against aiosmtpd with a certificate made for the test, trusted
//! through `smtp.ca_file`; and a server whose certificate is not trusted is refused.
//!
//! aiosmtpd is started here rather than through the test bed's `Smtp`, which has no TLS
//! options; it is the same interpreter (`ENROLLSTREAM_PYTHON`) and the same handler.

use chrono::Utc;
use enrollstream_mail::{SmtpConfig, SmtpMailer, SmtpTls};
use enrollstream_ports::mailer::{MailError, Mailer, ReminderEmail};
use enrollstream_testkit::testbed::free_port;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const DEADLINE: Duration = Duration::from_secs(30);

struct TlsServer {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl TlsServer {
    /// aiosmtpd with the test certificate, for STARTTLS or for implicit TLS (SMTPS).
    fn start(mode: SmtpTls) -> TlsServer {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("test certificate");
        std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
        let port = free_port();
        let python = std::env::var("ENROLLSTREAM_PYTHON").unwrap_or_else(|_| "python3".into());
        let (cert_flag, key_flag) = match mode {
            SmtpTls::Implicit => ("--smtpscert", "--smtpskey"),
            _ => ("--tlscert", "--tlskey"),
        };
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(cert_flag)
            .arg(dir.path().join("cert.pem"))
            .arg(key_flag)
            .arg(dir.path().join("key.pem"))
            .arg(dir.path().join("maildir"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start aiosmtpd with {python} (bash scripts/testbed/install.sh): {e}")
            });
        let mut server = TlsServer { child, port, dir };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("aiosmtpd exited with {status}: is aiosmtpd installed for {python}?");
            }
            assert!(
                started.elapsed() < DEADLINE,
                "aiosmtpd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn received(&self) -> Vec<String> {
        let new = self.dir.path().join("maildir").join("new");
        read_all(&new)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_all(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect()
}

fn email() -> ReminderEmail {
    ReminderEmail {
        to: "broker@acme.test".into(),
        from: "Enrollstream <reminders@enrollstream.localhost>".into(),
        subject: "Signature needed".into(),
        text: "Please sign.".into(),
        html: "<p>Please sign.</p>".into(),
        message_id: "<reminder-TLS-1@enrollstream>".into(),
        date: Utc::now(),
    }
}

fn mailer(server: &TlsServer, tls: SmtpTls, trusted: bool) -> SmtpMailer {
    SmtpMailer::new(&SmtpConfig {
        host: "127.0.0.1".into(),
        port: server.port,
        tls,
        timeout: Duration::from_secs(10),
        ca_file: trusted.then(|| server.ca_file()),
        ..SmtpConfig::default()
    })
    .expect("mailer")
}

async fn send(mailer: &SmtpMailer) -> Result<(), MailError> {
    tokio::time::timeout(Duration::from_secs(60), mailer.send(&email()))
        .await
        .expect("the send ended on its own step timeouts")
}

#[tokio::test]
async fn starttls_delivers() {
    let server = TlsServer::start(SmtpTls::Starttls);
    send(&mailer(&server, SmtpTls::Starttls, true))
        .await
        .expect("delivered over STARTTLS");
    let mails = server.received();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("Message-ID: <reminder-TLS-1@enrollstream>"));
}

#[tokio::test]
async fn implicit_tls_delivers() {
    let server = TlsServer::start(SmtpTls::Implicit);
    send(&mailer(&server, SmtpTls::Implicit, true))
        .await
        .expect("delivered over SMTPS");
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_and_nothing_is_sent() {
    let server = TlsServer::start(SmtpTls::Starttls);
    let err = send(&mailer(&server, SmtpTls::Starttls, false))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, MailError::Transient(t) if t.starts_with("starttls")),
        "{err:?}"
    );
    assert!(server.received().is_empty());
}
