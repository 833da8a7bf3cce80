use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::Context;
use tempfile::TempDir;

/// A fresh directory for one component instance, removed when dropped.
///
/// Named `COMPONENT-PID-RANDOM` under one base directory so that the directories a crashed test
/// process left behind (its components died with it) are removed by the next test process.
pub(crate) fn scratch_dir(component: &str) -> anyhow::Result<TempDir> {
    let base = base_dir();
    fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| sweep_dead(&base));
    tempfile::Builder::new()
        .prefix(&format!("{component}-{}-", std::process::id()))
        .tempdir_in(&base)
        .with_context(|| {
            format!(
                "creating a scratch dir for {component} in {}",
                base.display()
            )
        })
}

fn base_dir() -> PathBuf {
    std::env::temp_dir().join("enrollstream-testbed")
}

fn sweep_dead(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let owner = name
            .to_str()
            .and_then(|name| name.split('-').nth(1)?.parse::<u32>().ok());
        if let Some(pid) = owner {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                // Best effort: another test process may be sweeping the same directory.
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}
