//! SMTP through lettre, one connection per email (reminders are rare; a pool would only hold
//! idle connections that servers drop).
//!
//! Timeouts: lettre's transport-level `timeout` bounds only the TCP connect on the tokio
//! transport (lettre 0.11.23, `AsyncNetworkStream::connect_tokio1`; reads and writes after it
//! have none), so a server that accepts and then stalls would hang a send forever. This mailer
//! drives lettre's `AsyncSmtpConnection` step by step instead and bounds each step with
//! `tokio::time::timeout`: connect + TLS + greeting + EHLO, STARTTLS + EHLO, AUTH, the message
//! (MAIL, RCPT, DATA, body), QUIT. A send therefore ends within five timeouts.

use async_trait::async_trait;
use enrollstream_ports::mailer::{MailError, Mailer, ReminderEmail};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use std::future::Future;
use std::time::Duration;

use crate::config::{ConfigError, SmtpConfig, SmtpTls};
use crate::message;

pub struct SmtpMailer {
    host: String,
    port: u16,
    tls: Option<(SmtpTls, TlsParameters)>,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
}

impl SmtpMailer {
    pub fn new(config: &SmtpConfig) -> Result<Self, ConfigError> {
        if config.timeout.is_zero() {
            return Err(ConfigError("smtp.timeout must be more than zero".into()));
        }
        let tls = match config.tls {
            SmtpTls::None => None,
            mode => Some((mode, tls_parameters(config)?)),
        };
        let credentials = match (&config.username, &config.password) {
            (Some(user), Some(password)) => Some(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            )),
            (None, None) => None,
            _ => {
                return Err(ConfigError(
                    "smtp.username and smtp.password go together".into(),
                ))
            }
        };
        if credentials.is_some() && config.tls == SmtpTls::None {
            tracing::warn!(host = %config.host, "SMTP credentials will cross the network unencrypted (smtp.tls = none)");
        }
        let hello = config
            .hello_name
            .clone()
            .map(ClientId::Domain)
            .unwrap_or_default();
        Ok(Self {
            host: config.host.clone(),
            port: config.port,
            tls,
            credentials,
            hello,
            timeout: config.timeout,
        })
    }

    /// Run one step of the conversation within the timeout.
    async fn step<T>(
        &self,
        name: &str,
        fut: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
    ) -> Result<T, StepError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StepError {
                text: format!("{name}: {e}"),
                permanent: e.is_permanent(),
            }),
            Err(_) => Err(StepError {
                text: format!("{name}: no answer within {:?}", self.timeout),
                permanent: false,
            }),
        }
    }

    async fn converse(&self, email: &ReminderEmail) -> Result<(), MailError> {
        let message = message::build(email)?;
        let envelope = message.envelope().clone();
        let bytes = message.formatted();
        let server = format!("{}:{}", self.host, self.port);
        let implicit = match &self.tls {
            Some((SmtpTls::Implicit, params)) => Some(params.clone()),
            _ => None,
        };
        let mut conn = self
            .step(
                "connect",
                AsyncSmtpConnection::connect_tokio1(
                    server.as_str(),
                    Some(self.timeout),
                    &self.hello,
                    implicit,
                    None,
                ),
            )
            .await
            .map_err(StepError::transient)?;
        if let Some((SmtpTls::Starttls, params)) = &self.tls {
            self.step("starttls", conn.starttls(params.clone(), &self.hello))
                .await
                .map_err(StepError::transient)?;
        }
        if let Some(credentials) = &self.credentials {
            // Refused credentials are our configuration, not the broker's: retry later.
            self.step(
                "auth",
                conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials),
            )
            .await
            .map_err(StepError::transient)?;
        }
        // Only here does a 5xx mean that this email can never be delivered.
        self.step("send", conn.send(&envelope, &bytes))
            .await
            .map_err(StepError::classified)?;
        // The server took the message; a failing goodbye changes nothing.
        if let Err(e) = self.step("quit", conn.quit()).await {
            tracing::debug!(error = ?e, "SMTP QUIT failed after the message was accepted");
        }
        Ok(())
    }
}

fn tls_parameters(config: &SmtpConfig) -> Result<TlsParameters, ConfigError> {
    let mut builder = TlsParameters::builder(config.host.clone());
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            ConfigError(format!("{} is not a PEM certificate: {e}", path.display()))
        })?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build_rustls()
        .map_err(|e| ConfigError(format!("TLS setup for {}: {e}", config.host)))
}

/// A failed step: what happened, and whether the server refused for good (5xx).
#[derive(Debug)]
struct StepError {
    text: String,
    permanent: bool,
}

impl StepError {
    fn transient(self) -> MailError {
        MailError::Transient(self.text)
    }

    fn classified(self) -> MailError {
        if self.permanent {
            MailError::Permanent(self.text)
        } else {
            MailError::Transient(self.text)
        }
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &ReminderEmail) -> Result<(), MailError> {
        self.converse(email).await
    }

    fn name(&self) -> &'static str {
        "smtp"
    }
}
