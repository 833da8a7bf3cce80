//! Each test-bed component starts fresh, answers its protocol on its socket, comes back on the
//! same port after a stop, and never outlives its handle or its test process.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use enrollstream_testkit::testbed::{free_port, Kafka, Mongo, Smtp};
use mongodb::bson::{doc, Document};

const PRODUCE: i16 = 0;
const FETCH: i16 = 1;
const METADATA: i16 = 3;
const FIND_COORDINATOR: i16 = 10;
const API_VERSIONS: i16 = 18;

/// Set in a child run of [`mongo_answers_ping`]: the child aborts with its server running.
const CRASH_AFTER_START: &str = "ENROLLSTREAM_TESTBED_CRASH_AFTER_START";

fn refuses_connections(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

/// Polls until nothing listens on `port` any more; false if something still does at the deadline.
fn wait_until_refused(port: u16, deadline: Duration) -> bool {
    let started = Instant::now();
    while !refuses_connections(port) {
        if started.elapsed() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn kafka_answers_api_versions_for_the_apis_clients_need() {
    let kafka = Kafka::start().expect("Kafka starts");
    assert_eq!(kafka.bootstrap(), format!("127.0.0.1:{}", kafka.port()));

    let keys: Vec<i16> = kafka
        .api_versions()
        .expect("ApiVersions")
        .iter()
        .map(|range| range.api_key)
        .collect();
    for key in [PRODUCE, FETCH, METADATA, FIND_COORDINATOR, API_VERSIONS] {
        assert!(
            keys.contains(&key),
            "Kafka does not serve api key {key}: {keys:?}"
        );
    }
}

#[test]
fn kafka_restart_serves_again_on_the_same_port_while_a_client_holds_a_connection() {
    let mut kafka = Kafka::start().expect("Kafka starts");
    let port = kafka.port();
    let _held = TcpStream::connect(kafka.bootstrap()).expect("client connection");

    kafka.kill();
    assert!(
        refuses_connections(port),
        "a killed broker still answers on {port}"
    );

    kafka.restart().expect("Kafka restarts");
    assert_eq!(kafka.port(), port);
    assert!(!kafka
        .api_versions()
        .expect("ApiVersions after restart")
        .is_empty());
}

#[test]
fn dropping_a_broker_handle_stops_the_broker() {
    let kafka = Kafka::start().expect("Kafka starts");
    let port = kafka.port();
    drop(kafka);
    assert!(
        refuses_connections(port),
        "the broker outlived its handle on {port}"
    );
}

#[test]
fn the_shared_broker_is_one_broker_for_the_whole_test_process() {
    let first = Kafka::shared();
    let second = Kafka::shared();
    assert_eq!(first.bootstrap(), second.bootstrap());
    assert!(!second.api_versions().expect("ApiVersions").is_empty());
}

#[tokio::test]
async fn mongo_answers_ping() {
    let mongo = Mongo::start().expect("FerretDB starts");
    assert_eq!(mongo.uri(), format!("mongodb://127.0.0.1:{}", mongo.port()));

    let client = mongodb::Client::with_uri_str(mongo.uri())
        .await
        .expect("client");
    let reply = client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await
        .expect("ping");
    assert_eq!(
        reply
            .get_f64("ok")
            .ok()
            .or_else(|| reply.get_i32("ok").ok().map(f64::from)),
        Some(1.0)
    );

    if std::env::var_os(CRASH_AFTER_START).is_some() {
        println!("testbed-port={}", mongo.port());
        std::process::abort();
    }
}

#[tokio::test]
async fn persistent_mongo_keeps_documents_across_pause_and_resume() {
    let mut mongo = Mongo::start().expect("FerretDB starts");
    let client = mongodb::Client::with_uri_str(mongo.uri())
        .await
        .expect("client");
    client
        .database("testbed")
        .collection::<Document>("applications")
        .insert_one(doc! { "_id": "application-1", "status": "submitted" })
        .await
        .expect("insert");

    mongo.pause();
    assert!(
        refuses_connections(mongo.port()),
        "a paused server still answers"
    );
    mongo.resume().expect("FerretDB resumes");

    let client = mongodb::Client::with_uri_str(mongo.uri())
        .await
        .expect("client");
    let found = client
        .database("testbed")
        .collection::<Document>("applications")
        .find_one(doc! { "_id": "application-1" })
        .await
        .expect("find");
    assert_eq!(
        found.and_then(|found| found.get_str("status").ok().map(str::to_owned)),
        Some("submitted".into())
    );
}

#[test]
fn a_crashed_test_process_leaves_no_server_behind() {
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "mongo_answers_ping",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_AFTER_START, "1")
        .output()
        .expect("running the crashing test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "the child test should have aborted: {stdout}"
    );
    let port: u16 = stdout
        .lines()
        .find_map(|line| line.split_once("testbed-port=").map(|(_, port)| port))
        .and_then(|port| port.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no port reported: {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert!(
        wait_until_refused(port, Duration::from_secs(10)),
        "FerretDB on {port} outlived the test process that started it"
    );
}

/// Sends one mail with a minimal SMTP conversation, checking every reply code.
fn send_mail(addr: SocketAddr, message_id: &str, to: &str, subject: &str) {
    let stream = TcpStream::connect(addr).expect("connect to SMTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let mut expect = |code: &str| {
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).expect("SMTP reply");
            assert!(line.starts_with(code), "expected {code}, got {line:?}");
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
    };
    expect("220");
    let mut say = |command: String, code: &str| {
        writer.write_all(command.as_bytes()).expect("SMTP write");
        expect(code);
    };
    say("EHLO testbed\r\n".into(), "250");
    say("MAIL FROM:<reminders@enrollstream.test>\r\n".into(), "250");
    say(format!("RCPT TO:<{to}>\r\n"), "250");
    say("DATA\r\n".into(), "354");
    say(
        format!(
            "Message-ID: <{message_id}>\r\nFrom: reminders@enrollstream.test\r\nTo: {to}\r\n\
             Subject: {subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             Please sign your application.\r\n.\r\n"
        ),
        "250",
    );
    say("QUIT\r\n".into(), "221");
}

#[tokio::test]
async fn smtp_stores_each_mail_in_its_maildir() {
    let smtp = Smtp::start().expect("aiosmtpd starts");
    assert!(smtp.messages().is_empty());

    send_mail(
        smtp.addr(),
        "reminder-1@enrollstream.test",
        "broker@example.test",
        "Signature pending",
    );

    let mails = smtp
        .wait_for_messages(1, Duration::from_secs(10))
        .await
        .expect("mail arrives");
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.message_id(), Some("<reminder-1@enrollstream.test>"));
    assert_eq!(mail.to(), Some("broker@example.test"));
    assert_eq!(mail.from(), Some("reminders@enrollstream.test"));
    assert_eq!(mail.subject(), Some("Signature pending"));
    assert_eq!(
        mail.text.as_deref().map(str::trim_end),
        Some("Please sign your application.")
    );
    assert!(mail.raw.contains("Subject: Signature pending"));
    assert!(mail.path.starts_with(smtp.maildir().join("new")));
}

#[tokio::test]
async fn smtp_stopped_refuses_and_started_again_receives_on_the_same_port() {
    let mut smtp = Smtp::start().expect("aiosmtpd starts");
    send_mail(
        smtp.addr(),
        "before@enrollstream.test",
        "broker@example.test",
        "Before",
    );
    smtp.wait_for_messages(1, Duration::from_secs(10))
        .await
        .expect("first mail");

    smtp.stop();
    assert!(
        refuses_connections(smtp.port()),
        "a stopped SMTP server still answers"
    );
    smtp.start_again().expect("aiosmtpd starts again");

    send_mail(
        smtp.addr(),
        "after@enrollstream.test",
        "broker@example.test",
        "After",
    );
    let mails = smtp
        .wait_for_messages(2, Duration::from_secs(10))
        .await
        .expect("second mail");
    let subjects: Vec<_> = mails.iter().filter_map(|mail| mail.subject()).collect();
    assert_eq!(subjects, ["Before", "After"]);
}

#[tokio::test]
async fn waiting_for_more_mails_than_arrive_fails_with_the_count() {
    let smtp = Smtp::start().expect("aiosmtpd starts");
    let error = smtp
        .wait_for_messages(1, Duration::from_millis(200))
        .await
        .expect_err("no mail was sent");
    assert!(
        error.to_string().contains("0 of 1 mails arrived"),
        "{error:#}"
    );
}

#[test]
fn free_ports_are_bindable_and_outside_the_ephemeral_range() {
    let port = free_port();
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .expect("port range")
        .split_whitespace()
        .next()
        .and_then(|low| low.parse().ok())
        .expect("lower bound");
    assert!(
        port < ephemeral_low,
        "{port} is in the ephemeral range from {ephemeral_low}"
    );
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
}
