//! The configuration's layering, strictness and redaction.

// figment's `Jail` closures must return its (large) error type; that is its API, not our choice.
#![allow(clippy::result_large_err)]

use super::*;
use crate::strict::TOP_LEVEL_KEYS;

#[test]
fn file_then_env_then_flags() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "e.toml",
            r#"
                listen = "127.0.0.1:9000"
                partitions = 6
                [topics]
                quote_events = "q-from-file"
            "#,
        )?;
        jail.set_env("ENROLLSTREAM_PARTITIONS", "12");
        jail.set_env("ENROLLSTREAM_TOPICS__ENROLLMENT_EVENTS", "e-from-env");
        let flags = Overrides {
            listen: Some("127.0.0.1:9100".parse().unwrap()),
            ..Default::default()
        };
        let c = Config::load(Some(Path::new("e.toml")), &flags).map_err(|e| e.to_string())?;
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.partitions, 12);
        assert_eq!(c.topics.quote_events, "q-from-file");
        assert_eq!(c.topics.enrollment_events, "e-from-env");
        assert_eq!(c.topics.quote_notifications, "quote-notifications");
        Ok(())
    });
}

#[test]
fn routing_follows_renamed_notification_topics() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("ENROLLSTREAM_TOPICS__QUOTE_NOTIFICATIONS", "prod.quote-n");
        jail.set_env("ENROLLSTREAM_TOPICS__ENTITY_UPDATES", "prod.entities");
        let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        let quote_rules: Vec<_> = c
            .routing
            .rules
            .iter()
            .filter(|r| r.event_types.iter().any(|t| t.contains(".quote.")))
            .collect();
        assert!(!quote_rules.is_empty());
        assert!(quote_rules.iter().all(|r| r.topic == "prod.quote-n"));
        assert!(c
            .routing
            .rules
            .iter()
            .any(|r| r.topic == "enrollment-notifications"));
        assert_eq!(
            c.routing.entity_updates_topic.as_deref(),
            Some("prod.entities")
        );
        Ok(())
    });
}

#[test]
fn an_empty_entity_updates_topic_turns_the_feed_off() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("ENROLLSTREAM_ROUTING__ENTITY_UPDATES_TOPIC", "");
        let c = Config::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
        assert_eq!(c.routing.entity_updates_topic, None);
        Ok(())
    });
}

#[test]
fn a_rule_to_a_topic_no_delivery_reads_is_refused_at_start() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "e.toml",
            r#"
                [[routing.rules]]
                event_types = ["com.enrollstream.quote.*"]
                topic = "nowhere"
                targets = ["salesforce"]
            "#,
        )?;
        let error =
            Config::load(Some(Path::new("e.toml")), &Overrides::default()).expect_err("refused");
        let message = error.to_string();
        assert!(message.contains("routing.rules[0]"), "{message}");
        assert!(message.contains("\"nowhere\""), "{message}");
        assert!(message.contains("quote-notifications"), "{message}");

        jail.create_file(
            "f.toml",
            "[routing]\nentity_updates_topic = \"elsewhere\"\n",
        )?;
        let error =
            Config::load(Some(Path::new("f.toml")), &Overrides::default()).expect_err("refused");
        assert!(error.to_string().contains("elsewhere"), "{error}");
        Ok(())
    });
}

#[test]
fn adapters_from_file_env_and_flags() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "e.toml",
            "[mongodb]\nuri = \"mongodb://u:pw@db:27017\"\ndatabase = \"prod\"\n",
        )?;
        jail.set_env("ENROLLSTREAM_KAFKA__CLIENT_ID", "from-env");
        jail.set_env("ENROLLSTREAM_MONGODB__LOOKUPS", "point");
        let flags = Overrides {
            kafka: Some(KafkaOverride {
                brokers: "k1:9092,k2:9092".into(),
            }),
            ..Default::default()
        };
        let c = Config::load(Some(Path::new("e.toml")), &flags).map_err(|e| e.to_string())?;
        let kafka = c.kafka.expect("kafka configured");
        assert_eq!(kafka.brokers, "k1:9092,k2:9092");
        assert_eq!(kafka.client_id, "from-env");
        let mongo = c.mongodb.expect("mongodb configured");
        assert_eq!(mongo.database, "prod");
        assert_eq!(
            mongo.lookups,
            enrollstream_mongodb::Lookups::Point,
            "from env"
        );
        assert!(
            !format!("{mongo:?}").contains("pw"),
            "the password is never printed"
        );
        Ok(())
    });
    let plain = Config::load(None, &Overrides::default()).unwrap();
    assert!(
        plain.kafka.is_none() && plain.mongodb.is_none(),
        "embedded by default"
    );
}

#[test]
fn unknown_keys_and_sections_are_refused_with_their_path_and_a_guess() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("typo.toml", "[reminders]\nintervl_hours = 2\n")?;
        let error =
            Config::load(Some(Path::new("typo.toml")), &Overrides::default()).expect_err("refused");
        let message = format!("{error:#}");
        assert!(
            message.contains("unknown key `reminders.intervl_hours`"),
            "{message}"
        );
        assert!(
            message.contains("did you mean `reminders.interval_hours`?"),
            "{message}"
        );
        assert!(message.contains("typo.toml"), "{message}");

        jail.create_file("bogus.toml", "[bogus]\nx = 1\n")?;
        let error = Config::load(Some(Path::new("bogus.toml")), &Overrides::default())
            .expect_err("refused");
        assert!(
            format!("{error:#}").contains("unknown key `bogus`"),
            "{error:#}"
        );

        jail.create_file(
            "deep.toml",
            "[deliveries.salesforce.delivery]\nmax_in_flght = 3\n",
        )?;
        let error =
            Config::load(Some(Path::new("deep.toml")), &Overrides::default()).expect_err("refused");
        let message = format!("{error:#}");
        assert!(message.contains("max_in_flght"), "{message}");

        // Variables of the same prefix that name no key of ours are someone else's.
        jail.set_env("ENROLLSTREAM_KAFKA_HOME", "/opt/kafka");
        jail.set_env("ENROLLSTREAM_CONFIG", "elsewhere.toml");
        assert!(Config::load(None, &Overrides::default()).is_ok());
        jail.set_env("ENROLLSTREAM_REMINDERS__MAX_ATTEMTS", "3");
        let error = Config::load(None, &Overrides::default()).expect_err("refused");
        assert!(
            format!("{error:#}").contains("did you mean `reminders.max_attempts`?"),
            "{error:#}"
        );
        Ok(())
    });
}

#[test]
fn every_section_is_validated() {
    figment::Jail::expect_with(|jail| {
        for (file, expected) in [
            ("[reminders]\nmax_attempts = 0\n", "reminders.max_attempts"),
            ("[reminders]\ninterval = \"0s\"\n", "reminders.interval"),
            ("[limits]\nmax_depth = 0\n", "limits.max_depth"),
            ("event_retention = \"1h\"\n", "event_retention"),
            ("[relay]\nbatch_size = 0\n", "relay.batch_size"),
            ("[mongodb]\nlookups = \"scan\"\n", "batched"),
        ] {
            jail.create_file("bad.toml", file)?;
            let error =
                Config::load(Some(Path::new("bad.toml")), &Overrides::default()).expect_err(file);
            assert!(format!("{error:#}").contains(expected), "{file}: {error:#}");
        }
        jail.create_file(
            "ok.toml",
            "[reminders]\ninterval = \"2s\"\ntick = \"100ms\"\n",
        )?;
        let c = Config::load(Some(Path::new("ok.toml")), &Overrides::default())
            .map_err(|e| e.to_string())?;
        assert_eq!(c.reminders.interval, std::time::Duration::from_secs(2));
        assert_eq!(c.event_topic_retention().unwrap(), Retention::Forever);
        Ok(())
    });
}

#[test]
fn the_top_level_keys_are_the_config_s() {
    let printed = toml::Value::try_from(Config::default()).unwrap();
    for key in printed.as_table().unwrap().keys() {
        assert!(
            TOP_LEVEL_KEYS.contains(&key.as_str()),
            "{key} missing from TOP_LEVEL_KEYS"
        );
    }
}

#[test]
fn missing_file_is_an_error() {
    assert!(Config::load(
        Some(Path::new("/nonexistent/x.toml")),
        &Overrides::default()
    )
    .is_err());
}
