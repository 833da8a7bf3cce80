//! deploy/kubernetes: one Deployment per role the binary knows, probed on the port it listens
//! on, with resources and a PodDisruptionBudget; the API behind a Service; a configuration the
//! binary loads, on Kafka and MongoDB.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::{
    env_setting, image, is_secret_setting, scalar_text, source, str_of, temp_file, yaml_document,
    yaml_documents, Env,
};

const DIR: &str = "deploy/kubernetes";

/// Every object of the manifests, with its file, after checking the kustomization lists them all.
pub fn objects() -> Vec<(String, Value)> {
    let kustomization = yaml_document(&format!("{DIR}/kustomization.yaml"));
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .expect("kustomization resources")
        .iter()
        .map(|r| str_of(r, "a resource").to_string())
        .collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(source::root().join(DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, on_disk,
        "{DIR}/kustomization.yaml lists exactly the manifests of {DIR}"
    );
    on_disk
        .into_iter()
        .flat_map(|file| {
            yaml_documents(&format!("{DIR}/{file}"))
                .into_iter()
                .map(move |doc| (file.clone(), doc))
        })
        .collect()
}

pub fn of_kind<'a>(objects: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|(_, o)| o["kind"] == kind)
        .map(|(_, o)| o)
        .collect()
}

fn name(object: &Value) -> &str {
    str_of(&object["metadata"]["name"], "metadata.name")
}

fn labels(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), str_of(v, k).to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn selects(selector: &BTreeMap<String, String>, pod: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| pod.get(k) == Some(v))
}

pub fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "{}: one container", name(deployment));
    &containers[0]
}

/// The role of a Deployment: the value of its one `--role` argument.
pub fn role(deployment: &Value) -> String {
    let args: Vec<&str> = container(deployment)["args"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: args", name(deployment)))
        .iter()
        .map(|a| str_of(a, "an argument"))
        .collect();
    let roles: Vec<&str> = args
        .windows(2)
        .filter(|w| w[0] == "--role")
        .map(|w| w[1])
        .collect();
    assert_eq!(
        roles.len(),
        1,
        "{}: exactly one --role in {args:?}",
        name(deployment)
    );
    roles[0].to_string()
}

/// The container's environment as `enrollstream config` sees it: the image's, then the
/// container's, a placeholder for each value taken from a Secret.
pub fn container_env(deployment: &Value) -> Env {
    let mut env = image::image_env();
    for var in container(deployment)["env"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = str_of(&var["name"], "env name").to_string();
        let value = if let Some(v) = scalar_text(&var["value"]) {
            v
        } else if let Some(secret_key) = var["valueFrom"]["secretKeyRef"]["key"].as_str() {
            format!("placeholder-of-secret-{secret_key}")
        } else {
            panic!(
                "{}: env {key} has neither a value nor a secretKeyRef",
                name(deployment)
            )
        };
        env.insert(key, value);
    }
    env
}

/// The port a probe or a Service names, as a number.
fn port_number(container: &Value, port: &Value) -> u16 {
    if let Some(n) = port.as_u64() {
        return n as u16;
    }
    let wanted = str_of(port, "a port name");
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == wanted)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {wanted}")) as u16
}

/// The file ENROLLSTREAM_CONFIG names, read through its volume mount from its ConfigMap.
fn mounted_config(objects: &[(String, Value)], deployment: &Value, path: &str) -> String {
    let path = Path::new(path);
    let mount = container(deployment)["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| path.parent() == Some(Path::new(str_of(&m["mountPath"], "mountPath"))))
        .unwrap_or_else(|| {
            panic!(
                "{}: nothing is mounted at {}",
                name(deployment),
                path.display()
            )
        });
    let volume = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("{}: no volume {}", name(deployment), mount["name"]));
    let config_map = str_of(
        &volume["configMap"]["name"],
        "the config volume is a ConfigMap",
    );
    let object = of_kind(objects, "ConfigMap")
        .into_iter()
        .find(|c| name(c) == config_map)
        .unwrap_or_else(|| panic!("no ConfigMap {config_map}"));
    let file = path.file_name().unwrap().to_string_lossy();
    str_of(
        &object["data"][file.as_ref()],
        "the ConfigMap key of the config file",
    )
    .to_string()
}

#[test]
fn each_role_runs_in_a_deployment_probed_on_its_port_with_resources_and_a_budget() {
    let objects = objects();
    let deployments = of_kind(&objects, "Deployment");
    let budgets = of_kind(&objects, "PodDisruptionBudget");
    let roles: BTreeSet<String> = deployments.iter().map(|d| role(d)).collect();
    assert_eq!(roles.len(), deployments.len(), "one Deployment per role");
    assert_eq!(
        roles,
        source::binary_roles(),
        "the Deployments run exactly the roles the binary knows"
    );
    let kustomization = yaml_document(&format!("{DIR}/kustomization.yaml"));
    let image_names: BTreeSet<&str> = kustomization["images"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| str_of(&i["name"], "image name"))
        .collect();
    let scratch = tempfile::tempdir().unwrap();

    for d in &deployments {
        let (name, role) = (name(d), role(d));
        let pod = &d["spec"]["template"];
        let pod_labels = labels(&pod["metadata"]["labels"]);
        assert!(
            selects(&labels(&d["spec"]["selector"]["matchLabels"]), &pod_labels),
            "{name}: its selector selects its pods"
        );
        let c = container(d);
        assert!(
            image_names.contains(str_of(&c["image"], "image")),
            "{name}: its image is set by the kustomization"
        );

        let env = container_env(d);
        let config_path = env
            .get("ENROLLSTREAM_CONFIG")
            .unwrap_or_else(|| panic!("{name}: ENROLLSTREAM_CONFIG"));
        let file = temp_file(
            scratch.path(),
            &format!("{role}.toml"),
            &mounted_config(&objects, d, config_path),
        );
        let effective = source::effective_config(name, &file, &env);
        assert_ne!(effective.bus, "embedded", "{name}: runs on Kafka");
        assert_ne!(effective.store, "sqlite", "{name}: keeps state in MongoDB");
        let port = effective.listen.port();
        assert!(
            effective.listen.ip().is_unspecified(),
            "{name}: listens on every interface, not {}",
            effective.listen
        );
        assert_eq!(
            port_number(c, &Value::from("http")),
            port,
            "{name}: the `http` port is the one the binary listens on"
        );
        for (probe, path) in [
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
            ("startupProbe", "/healthz"),
        ] {
            let http = &c[probe]["httpGet"];
            if probe == "startupProbe" && c[probe].is_null() {
                continue;
            }
            assert_eq!(http["path"], path, "{name}: {probe} asks {path}");
            assert_eq!(
                port_number(c, &http["port"]),
                port,
                "{name}: {probe} asks the port the binary listens on"
            );
        }
        let annotations = &pod["metadata"]["annotations"];
        assert_eq!(
            scalar_text(&annotations["prometheus.io/port"]),
            Some(port.to_string()),
            "{name}: scraped on its port"
        );
        assert_eq!(
            annotations["prometheus.io/path"], "/metrics",
            "{name}: scraped at /metrics"
        );

        for (kind, resource) in [
            ("requests", "cpu"),
            ("requests", "memory"),
            ("limits", "memory"),
        ] {
            assert!(
                scalar_text(&c["resources"][kind][resource]).is_some(),
                "{name}: resources.{kind}.{resource} is set"
            );
        }
        // The binary waits up to 30 s for in-flight work after SIGTERM (crates/enrollstream/src/app.rs).
        let grace = pod["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30);
        assert!(
            grace >= 35,
            "{name}: terminationGracePeriodSeconds {grace} leaves the 30 s drain no room"
        );

        let pod_security = &pod["spec"]["securityContext"];
        assert!(
            pod_security["runAsNonRoot"] == true || c["securityContext"]["runAsNonRoot"] == true,
            "{name}: runAsNonRoot"
        );
        assert_ne!(pod_security["runAsUser"], 0, "{name}: not uid 0");
        assert_eq!(
            c["securityContext"]["allowPrivilegeEscalation"], false,
            "{name}: no privilege escalation"
        );
        assert_eq!(
            c["securityContext"]["readOnlyRootFilesystem"], true,
            "{name}: read-only root file system"
        );
        let mounts: Vec<&str> = c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| str_of(&m["mountPath"], "mountPath"))
            .collect();
        assert!(
            mounts.iter().any(|m| effective.data_dir.starts_with(m)),
            "{name}: the data dir {} is a writable volume ({mounts:?})",
            effective.data_dir.display()
        );

        let matching: Vec<&&Value> = budgets
            .iter()
            .filter(|b| selects(&labels(&b["spec"]["selector"]["matchLabels"]), &pod_labels))
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "{name}: exactly one PodDisruptionBudget selects its pods"
        );
        let budget_selector = labels(&matching[0]["spec"]["selector"]["matchLabels"]);
        for other in deployments
            .iter()
            .filter(|o| super::kubernetes::name(o) != name)
        {
            let other_labels = labels(&other["spec"]["template"]["metadata"]["labels"]);
            assert!(
                !selects(&budget_selector, &other_labels),
                "{name}'s budget also selects the pods of {}",
                super::kubernetes::name(other)
            );
        }
    }
    assert_eq!(
        budgets.len(),
        deployments.len(),
        "a PodDisruptionBudget per Deployment, no stray one"
    );

    // docs/architecture.md: one relay per store, never two at once (not even during a rollout).
    let relay = deployments.iter().find(|d| role(d) == "relay").unwrap();
    assert_eq!(relay["spec"]["replicas"], 1, "the relay runs one replica");
    assert_eq!(
        relay["spec"]["strategy"]["type"], "Recreate",
        "the relay is replaced, never doubled, on a rollout"
    );
}

#[test]
fn the_api_alone_is_behind_a_service_on_the_port_it_listens_on() {
    let objects = objects();
    let deployments = of_kind(&objects, "Deployment");
    let services = of_kind(&objects, "Service");
    assert_eq!(services.len(), 1, "one Service: the API's");
    let service = services[0];
    let selector = labels(&service["spec"]["selector"]);
    let selected: Vec<String> = deployments
        .iter()
        .filter(|d| {
            selects(
                &selector,
                &labels(&d["spec"]["template"]["metadata"]["labels"]),
            )
        })
        .map(|d| role(d))
        .collect();
    assert_eq!(selected, ["api"], "the Service selects the API's pods only");
    let api = deployments.iter().find(|d| role(d) == "api").unwrap();
    let image_port = image::image_env()["ENROLLSTREAM_LISTEN"]
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    for port in service["spec"]["ports"].as_array().expect("ports") {
        assert_eq!(
            port_number(container(api), &port["targetPort"]),
            image_port,
            "the Service forwards to the port the API listens on"
        );
    }
}

/// Every variable that sets a credential takes it from a Secret; the ConfigMaps hold none.
#[test]
fn credentials_come_from_a_secret_and_never_sit_in_the_manifests() {
    let objects = objects();
    let secret_fields = source::secret_fields();
    assert!(
        of_kind(&objects, "Secret").is_empty(),
        "no Secret object is shipped: operators create it (docs/operations.md)"
    );
    let operations = source::read("docs/operations.md");
    for d in of_kind(&objects, "Deployment") {
        for var in container(d)["env"].as_array().into_iter().flatten() {
            let key = str_of(&var["name"], "env name");
            let Some(setting) = env_setting(key) else {
                continue;
            };
            if is_secret_setting(&setting, &secret_fields) {
                assert!(
                    var["value"].is_null(),
                    "{}: {key} holds a credential: take it from a Secret",
                    name(d)
                );
                let secret_key =
                    str_of(&var["valueFrom"]["secretKeyRef"]["key"], "secretKeyRef.key");
                assert!(
                    operations.contains(secret_key),
                    "docs/operations.md does not say how to create the Secret key {secret_key} that {} reads",
                    name(d)
                );
            }
        }
    }
    for config_map in of_kind(&objects, "ConfigMap") {
        for (key, text) in config_map["data"].as_object().into_iter().flatten() {
            if key.ends_with(".toml") {
                let table: toml::Table = str_of(text, key)
                    .parse()
                    .unwrap_or_else(|e| panic!("{key}: {e}"));
                let mut found = Vec::new();
                super::toml_secrets(&table, "", &secret_fields, &mut found);
                assert!(
                    found.is_empty(),
                    "ConfigMap {}: {key} sets credentials {found:?}",
                    name(config_map)
                );
                let unknown = source::unknown_config_keys(&table);
                assert!(
                    unknown.is_empty(),
                    "ConfigMap {}: {key} sets keys the configuration does not have: {unknown:?}",
                    name(config_map)
                );
            }
        }
    }
}
