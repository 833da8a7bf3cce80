//! `[telemetry]` keys of span export: checked at start, like every section.

use std::time::Duration;

use crate::config::TelemetryConfig;

impl TelemetryConfig {
    /// The URL spans are posted to, when export is configured.
    pub fn otlp_traces_url(&self) -> anyhow::Result<Option<reqwest::Url>> {
        let Some(endpoint) = self.otlp_endpoint.as_deref() else {
            return Ok(None);
        };
        let mut url = reqwest::Url::parse(endpoint)
            .map_err(|e| anyhow::anyhow!("telemetry.otlp_endpoint is not a URL: {e}"))?;
        anyhow::ensure!(
            matches!(url.scheme(), "http" | "https") && url.host().is_some(),
            "telemetry.otlp_endpoint must be an http:// or https:// URL with a host"
        );
        // The configuration is printed: a credential in it would be too.
        anyhow::ensure!(
            url.username().is_empty() && url.password().is_none() && url.query().is_none(),
            "telemetry.otlp_endpoint must not carry credentials or a query"
        );
        if url.path() == "/" {
            url.set_path("/v1/traces");
        }
        Ok(Some(url))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (Duration::from_millis(100)..=Duration::from_secs(300)).contains(&self.sample_every),
            "telemetry.sample_every must be between 100ms and 5m"
        );
        anyhow::ensure!(
            (Duration::from_millis(100)..=Duration::from_secs(60)).contains(&self.otlp_timeout),
            "telemetry.otlp_timeout must be between 100ms and 1m"
        );
        anyhow::ensure!(
            (64..=65_536).contains(&self.otlp_queue_size),
            "telemetry.otlp_queue_size must be between 64 and 65536"
        );
        self.otlp_traces_url()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_endpoint(endpoint: &str) -> TelemetryConfig {
        TelemetryConfig {
            otlp_endpoint: Some(endpoint.to_string()),
            ..TelemetryConfig::default()
        }
    }

    #[test]
    fn a_base_url_gets_the_traces_path_and_a_full_one_is_kept() {
        let url = |e: &str| with_endpoint(e).otlp_traces_url().unwrap().unwrap();
        assert_eq!(
            url("http://127.0.0.1:4318").as_str(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            url("https://collector.example/otlp/v1/traces").as_str(),
            "https://collector.example/otlp/v1/traces"
        );
        assert!(TelemetryConfig::default()
            .otlp_traces_url()
            .unwrap()
            .is_none());
    }

    #[test]
    fn bad_endpoints_and_bounds_are_refused_by_name() {
        for (config, expected) in [
            (with_endpoint("collector:4318"), "http:// or https://"),
            (with_endpoint("not a url"), "not a URL"),
            (
                with_endpoint("http://user:pw@collector:4318"),
                "credentials",
            ),
            (
                with_endpoint("http://collector:4318/?token=x"),
                "credentials",
            ),
            (
                TelemetryConfig {
                    otlp_queue_size: 1,
                    ..TelemetryConfig::default()
                },
                "otlp_queue_size",
            ),
            (
                TelemetryConfig {
                    otlp_timeout: Duration::ZERO,
                    ..TelemetryConfig::default()
                },
                "otlp_timeout",
            ),
        ] {
            let error = config.validate().expect_err(expected).to_string();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains("pw"), "{error}");
        }
    }
}
