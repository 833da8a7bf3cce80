//! deploy/compose: one service per role on Apache Kafka (KRaft) and a MongoDB replica set, with
//! the image's probe, an SMTP sink for the reminders, and Prometheus scraping every role.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

use super::{
    env_setting, has_userinfo_password, image, is_secret_setting, scalar_text, source, str_of,
    yaml_document, Env,
};

const DIR: &str = "deploy/compose";

fn compose() -> Value {
    yaml_document(&format!("{DIR}/compose.yaml"))
}

fn command(service: &Value) -> Vec<String> {
    service["command"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| scalar_text(a).expect("a command word"))
        .collect()
}

/// Role services: those started with `--role`; each runs one role.
fn role_services(compose: &Value) -> Vec<(String, String, &Value)> {
    compose["services"]
        .as_object()
        .expect("services")
        .iter()
        .filter_map(|(name, service)| {
            let command = command(service);
            let roles: Vec<String> = command
                .windows(2)
                .filter(|w| w[0] == "--role")
                .map(|w| w[1].clone())
                .collect();
            match roles.len() {
                0 => None,
                1 => Some((name.clone(), roles[0].clone(), service)),
                _ => panic!("compose service {name} runs several roles: {command:?}"),
            }
        })
        .collect()
}

fn service_env(name: &str, service: &Value) -> Env {
    let mut env = image::image_env();
    let own = service["environment"]
        .as_object()
        .unwrap_or_else(|| panic!("compose service {name}: environment as a map"));
    for (k, v) in own {
        env.insert(
            k.clone(),
            scalar_text(v).unwrap_or_else(|| panic!("{name}: {k}")),
        );
    }
    env
}

/// The host file a service mounts at `target`, relative to the compose file.
fn mounted(name: &str, service: &Value, target: &str) -> PathBuf {
    service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .find_map(|v| {
            let mut parts = v.split(':');
            let (host, container) = (parts.next()?, parts.next()?);
            (container == target).then(|| source::root().join(DIR).join(host))
        })
        .unwrap_or_else(|| panic!("compose service {name} mounts nothing at {target}"))
}

#[test]
fn each_role_runs_as_a_service_on_kafka_kraft_and_a_mongodb_replica_set() {
    let compose = compose();
    let services = &compose["services"];
    let roles = role_services(&compose);
    let names: BTreeSet<String> = roles.iter().map(|(_, role, _)| role.clone()).collect();
    assert_eq!(names.len(), roles.len(), "one service per role");
    assert_eq!(
        names,
        source::binary_roles(),
        "the compose services run exactly the roles the binary knows"
    );

    let kafka = &services["kafka"];
    assert!(
        str_of(&kafka["image"], "kafka image").starts_with("apache/kafka:"),
        "Kafka is the official apache/kafka image"
    );
    let kafka_env = &kafka["environment"];
    let process_roles = str_of(&kafka_env["KAFKA_PROCESS_ROLES"], "KAFKA_PROCESS_ROLES");
    assert!(
        process_roles.contains("broker") && process_roles.contains("controller"),
        "Kafka runs KRaft, broker and controller in one node"
    );
    assert!(
        kafka_env
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.contains("ZOOKEEPER")),
        "no ZooKeeper"
    );
    let advertised = str_of(
        &kafka_env["KAFKA_ADVERTISED_LISTENERS"],
        "KAFKA_ADVERTISED_LISTENERS",
    );
    let mongo = &services["mongodb"];
    assert!(
        str_of(&mongo["image"], "mongodb image").starts_with("mongo:"),
        "MongoDB is the official mongo image"
    );
    let mongod = command(mongo);
    let replica_set = mongod
        .windows(2)
        .find(|w| w[0] == "--replSet")
        .map(|w| w[1].clone())
        .expect("mongod runs with --replSet (change streams need a replica set)");
    let mongo_check = serde_json::to_string(&mongo["healthcheck"]["test"]).unwrap();
    assert!(
        mongo_check.contains("rs.initiate") && mongo_check.contains(&replica_set),
        "the MongoDB healthcheck initiates the replica set {replica_set}"
    );
    for engine in ["kafka", "mongodb"] {
        assert!(
            !services[engine]["healthcheck"].is_null(),
            "{engine} has a healthcheck the roles wait on"
        );
    }

    let probe = image::probe_script();
    let scratch_env: Vec<(String, Env, PathBuf)> = roles
        .iter()
        .map(|(name, _, service)| {
            let env = service_env(name, service);
            let config = mounted(
                name,
                service,
                env.get("ENROLLSTREAM_CONFIG").expect("ENROLLSTREAM_CONFIG"),
            );
            (name.clone(), env, config)
        })
        .collect();
    for ((name, role, service), (_, env, config)) in roles.iter().zip(&scratch_env) {
        assert_eq!(
            name, role,
            "the service of role {role} is named after it (Prometheus scrapes it by that name)"
        );
        assert_eq!(
            service["build"]["dockerfile"],
            image::DOCKERFILE,
            "{name}: built from {}",
            image::DOCKERFILE
        );
        let context = source::root()
            .join(DIR)
            .join(str_of(&service["build"]["context"], "build context"));
        assert_eq!(
            context.canonicalize().unwrap(),
            source::root(),
            "{name}: the build context is the repository root"
        );

        let effective = source::effective_config(name, config, env);
        let brokers = env
            .get("ENROLLSTREAM_KAFKA_BROKERS")
            .expect("ENROLLSTREAM_KAFKA_BROKERS");
        assert!(
            effective.bus.contains(&format!("brokers: {brokers:?}")),
            "{name}: runs on the compose Kafka ({})",
            effective.bus
        );
        assert!(
            advertised.contains(brokers.as_str()),
            "{name}: {brokers} is a listener Kafka advertises ({advertised})"
        );
        let uri = env
            .get("ENROLLSTREAM_MONGODB_URI")
            .expect("ENROLLSTREAM_MONGODB_URI");
        assert!(
            uri.starts_with("mongodb://mongodb:")
                && uri.contains(&format!("replicaSet={replica_set}")),
            "{name}: MongoDB through the replica set {replica_set}: {uri}"
        );
        assert!(
            effective.store.starts_with("MongoConfig"),
            "{name}: keeps state in MongoDB ({})",
            effective.store
        );
        let listen_port = env["ENROLLSTREAM_LISTEN"]
            .rsplit(':')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(
            effective.listen.port().to_string(),
            listen_port,
            "{name}: listens where the probe asks (ENROLLSTREAM_LISTEN)"
        );

        let test: Vec<String> = service["healthcheck"]["test"]
            .as_array()
            .expect("a healthcheck")
            .iter()
            .map(|t| str_of(t, "test").to_string())
            .collect();
        assert_eq!(
            test[..3],
            ["CMD", "bash", "-c"],
            "{name}: the healthcheck runs bash"
        );
        assert_eq!(
            test[3].replace("$$", "$"),
            probe,
            "{name}: the compose healthcheck is the image's (/healthz and /readyz)"
        );
        let grace = str_of(&service["stop_grace_period"], "stop_grace_period");
        let seconds: u64 = grace
            .strip_suffix('s')
            .and_then(|s| s.parse().ok())
            .expect("stop_grace_period in seconds");
        assert!(
            seconds >= 35,
            "{name}: stop_grace_period {grace} leaves the 30 s drain no room"
        );
        for engine in ["kafka", "mongodb"] {
            assert_eq!(
                service["depends_on"][engine]["condition"], "service_healthy",
                "{name}: waits for {engine} to be healthy"
            );
        }
    }
    let (api_name, _, api) = roles.iter().find(|(_, role, _)| role == "api").unwrap();
    let api_port = scratch_env.iter().find(|(n, ..)| n == api_name).unwrap().1
        ["ENROLLSTREAM_LISTEN"]
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert!(
        api["ports"].as_array().into_iter().flatten().any(|p| p
            .as_str()
            .is_some_and(|p| p.ends_with(&format!(":{api_port}")))),
        "the API's port {api_port} is published"
    );

    // The reminders send through the SMTP sink of the stack.
    let config: toml::Table = std::fs::read_to_string(&scratch_env[0].2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        config["mail"]["sink"].as_str(),
        Some("smtp"),
        "reminder mails go to SMTP"
    );
    let smtp_host = config["mail"]["smtp"]["host"]
        .as_str()
        .expect("mail.smtp.host");
    assert!(
        services[smtp_host].is_object() && command(&services[smtp_host]).is_empty(),
        "the SMTP host {smtp_host} is a service of the stack"
    );
}

#[test]
fn prometheus_scrapes_every_role_and_every_mounted_file_exists() {
    let compose = compose();
    for (name, service) in compose["services"].as_object().unwrap() {
        for volume in service["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
        {
            let host = volume.split(':').next().unwrap();
            if host.starts_with('.') {
                let path = source::root().join(DIR).join(host);
                assert!(
                    path.exists(),
                    "compose service {name} mounts {host}, which does not exist"
                );
            }
        }
    }
    let prometheus = yaml_document(&format!("{DIR}/prometheus.yml"));
    let jobs = prometheus["scrape_configs"]
        .as_array()
        .expect("scrape_configs");
    let job = jobs
        .iter()
        .find(|j| j["job_name"] == "enrollstream")
        .expect("a scrape job named enrollstream (the alert rules select it)");
    let mut scraped = BTreeSet::new();
    for group in job["static_configs"].as_array().expect("static_configs") {
        let role = str_of(&group["labels"]["role"], "each target carries its role");
        for target in group["targets"].as_array().unwrap() {
            assert!(
                str_of(target, "target").starts_with(&format!("{role}:")),
                "target {target} is labelled role={role}"
            );
            scraped.insert(str_of(target, "target").to_string());
        }
    }
    let port = image::image_env()["ENROLLSTREAM_LISTEN"]
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let expected: BTreeSet<String> = role_services(&compose)
        .iter()
        .map(|(name, ..)| format!("{name}:{port}"))
        .collect();
    assert_eq!(
        scraped, expected,
        "Prometheus scrapes every role service on its port"
    );
    let rules = prometheus["rule_files"].as_array().expect("rule_files");
    let service = &compose["services"]["prometheus"];
    for rule_file in rules {
        let host = mounted("prometheus", service, str_of(rule_file, "rule file"));
        assert_eq!(
            host.canonicalize().unwrap(),
            source::root().join("deploy/prometheus/alerts.yaml"),
            "Prometheus loads deploy/prometheus/alerts.yaml"
        );
    }
}

#[test]
fn compose_holds_no_credentials() {
    let compose = compose();
    let secret_fields = source::secret_fields();
    for (name, service) in compose["services"].as_object().unwrap() {
        for (key, value) in service["environment"].as_object().into_iter().flatten() {
            let value = scalar_text(value).unwrap_or_default();
            let interpolated = value.starts_with("${") && value.ends_with('}');
            if env_setting(key).is_some_and(|s| is_secret_setting(&s, &secret_fields)) {
                // A local engine without authentication needs no secret; anything else does.
                let unauthenticated_uri = value.contains("://") && !has_userinfo_password(&value);
                assert!(
                    interpolated || unauthenticated_uri,
                    "compose service {name}: {key} holds a credential: use ${{VARIABLE}}"
                );
            }
            assert!(
                !has_userinfo_password(&value),
                "compose service {name}: {key} carries a password in a URL"
            );
        }
    }
    let config: toml::Table = source::read(&format!("{DIR}/enrollstream.toml"))
        .parse()
        .unwrap();
    let mut found = Vec::new();
    super::toml_secrets(&config, "", &secret_fields, &mut found);
    assert!(
        found.is_empty(),
        "{DIR}/enrollstream.toml sets credentials {found:?}"
    );
    let unknown = source::unknown_config_keys(&config);
    assert!(
        unknown.is_empty(),
        "{DIR}/enrollstream.toml sets keys the configuration does not have: {unknown:?}"
    );
}
