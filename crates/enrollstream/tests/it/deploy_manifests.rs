//! The deployment files of deploy/ checked against the code they deploy, read from the sources
//! and from the real binary: the roles it knows (`serve --help`), the configuration it loads
//! (`enrollstream config`), the port it listens on, the metrics it records, the configuration
//! fields that hold credentials. A mismatch fails with what to fix. There is no container engine
//! here: the image is checked by reading deploy/Dockerfile, and its healthcheck by running it
//! against the binary.

use crate::deploy;

use deploy::{has_userinfo_password, source, strings, yaml_documents};

/// No file of deploy/ carries a password in a URL or a private key, whatever its format.
#[test]
fn no_deployment_file_holds_a_credential() {
    let mut checked = 0;
    let mut stack = vec![source::root().join("deploy")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(source::root())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains("PRIVATE KEY"),
                "{relative} holds a private key"
            );
            let docs = if relative.ends_with(".yaml") || relative.ends_with(".yml") {
                yaml_documents(&relative)
            } else {
                Vec::new()
            };
            let mut values = Vec::new();
            for doc in &docs {
                strings(doc, relative.clone(), &mut values);
            }
            if docs.is_empty() {
                values.push((relative.clone(), text.as_str()));
            }
            for (at, value) in values {
                assert!(
                    !has_userinfo_password(value),
                    "{at} carries a password in a URL"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} files under deploy/");

    let stages = deploy::image::stages();
    for stage in &stages {
        for i in stage.all("ARG").chain(stage.all("ENV")) {
            let upper = i.args.to_ascii_uppercase();
            for word in ["PASSWORD", "SECRET", "TOKEN", "API_KEY"] {
                assert!(
                    !upper.contains(word),
                    "deploy/Dockerfile line {}: {} {} bakes a credential into the image",
                    i.line,
                    i.keyword,
                    i.args
                );
            }
        }
    }
}
