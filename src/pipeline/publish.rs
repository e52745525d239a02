//! The publish protocol (SPEC §5, docs/RELIABILITY.md): a lock per output, a temporary
//! directory beside it, an atomic rename into place, and the paths a run may overwrite.
//! Local files only; object storage (SPEC §10.2) is to implement the same steps with a
//! manifest written last.

use super::RunArgs;
use crate::error::{Error, Result};
use crate::io::guard;
use std::path::{Path, PathBuf};

/// The inputs a run reads, by the flag that names them.
pub(super) fn inputs(args: &RunArgs) -> Vec<guard::Input<'_>> {
    let mut v =
        vec![guard::Input { role: "--job", path: &args.job }, guard::Input { role: "--state", path: &args.state }];
    for (role, p) in [("--usage", &args.usage), ("--credits", &args.credits), ("--events", &args.events)] {
        if let Some(path) = p {
            v.push(guard::Input { role, path });
        }
    }
    v
}

/// Every path a run of `out` creates, replaces or removes: the output, its review directory
/// (`<out>.rejected`), the lock, and the temporary and set-aside directories named by process
/// id (`.<name>.tmp-*`, `.<name>.old-*`, `.<name>.rejected.tmp-*`), which [`clean_stale`]
/// removes after a killed run.
pub(super) fn owned_paths(out: &Path) -> Vec<guard::Written> {
    let w = |what, path, prefix| guard::Written { what, path, prefix };
    vec![
        w("output", out.to_path_buf(), false),
        w("review directory", sibling(out, "rejected"), false),
        w("lock", sibling(out, "lock"), false),
        w("temporary directory", sibling(out, "tmp-"), true),
        w("set-aside directory", sibling(out, "old-"), true),
        w("temporary review directory", sibling(out, "rejected.tmp-"), true),
    ]
}

/// `<dir>/<.name>.<suffix>` beside `target`.
pub(super) fn sibling(target: &Path, suffix: &str) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if suffix == "rejected" {
        parent.join(format!("{name}.rejected"))
    } else {
        parent.join(format!(".{name}.{suffix}"))
    }
}

/// Take `.<name>.lock` beside the output; a second run of the same output is refused
/// (exit 4) instead of racing the first.
pub(super) fn lock_output(out: &Path) -> Result<std::fs::File> {
    let path = sibling(out, "lock");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening lock {}", path.display()), e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Busy(out.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(format!("locking {}", path.display()), e)),
    }
}

/// Remove what a killed run of this output left behind (under the lock, so never a live
/// run's files).
pub(super) fn clean_stale(out: &Path) {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Ok(rd) = std::fs::read_dir(parent) else { return };
    for e in rd.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        if f.starts_with(&format!(".{name}.tmp-")) || f.starts_with(&format!(".{name}.old-")) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

pub(super) fn fresh_dir(p: &Path) -> Result<()> {
    if p.exists() {
        std::fs::remove_dir_all(p).map_err(|e| Error::io(format!("removing {}", p.display()), e))?;
    }
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    std::fs::create_dir(p).map_err(|e| Error::io(format!("creating {}", p.display()), e))
}

/// Move `tmp` into place at `target`, replacing an existing `target`.
pub(super) fn replace_dir(tmp: &Path, target: &Path) -> Result<()> {
    if target.exists() {
        let old = sibling(target, &format!("old-{}", std::process::id()));
        std::fs::rename(target, &old).map_err(|e| Error::io(format!("moving aside {}", target.display()), e))?;
        std::fs::rename(tmp, target).map_err(|e| Error::io(format!("publishing {}", target.display()), e))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(tmp, target).map_err(|e| Error::io(format!("publishing {}", target.display()), e))?;
    }
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
