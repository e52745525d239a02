//! The storage seam of a run's output: where it is published and how it becomes visible
//! (SPEC §5 "written atomically", §10.2 "a run is published exactly when its manifest
//! exists"). The run writes its files into a local staging directory and hands it to the
//! store; the store decides what publishing means.
//!
//! [`LocalDir`] is the local-file store: a lock file beside the output, a staging directory
//! beside it (`.<name>.tmp-<pid>`), and one `rename` into place. An object-store prefix
//! (issue 33) implements the same trait: no lock file (one writer per prefix is the
//! scheduler's), the staged files uploaded under the prefix and the manifest last.

use crate::error::{Error, Result};
use crate::io::guard;
use std::path::{Path, PathBuf};

/// Where a run's output goes. Every method is called under [`OutputStore::lock`].
pub trait OutputStore {
    /// The output's name in messages.
    fn location(&self) -> String;
    /// Hold the output against a second run until the guard is dropped; a second run is
    /// refused (exit 4).
    fn lock(&self) -> Result<Box<dyn std::any::Any>>;
    /// Whether something is at the output's place.
    fn exists(&self) -> bool;
    /// What is there may be replaced with `--force`: nothing, or a previous billrun output.
    fn check_replaceable(&self) -> Result<()>;
    /// Remove what a killed run of this output left behind.
    fn clean_stale(&self);
    /// A fresh, empty local directory to write the run's files into.
    fn stage(&self) -> Result<PathBuf>;
    /// Make the staged files the output, replacing what was there.
    fn publish(&self, staged: &Path) -> Result<()>;
    /// Drop a staged directory after a failure.
    fn discard(&self, staged: &Path);
}

/// A local directory (SPEC §5: nothing appears under it until the run succeeds).
#[derive(Clone, Debug)]
pub struct LocalDir {
    path: PathBuf,
}

impl LocalDir {
    /// `path` should end in a name (see [`guard::resolve_parent`]): the lock and the staging
    /// directories are named after it, beside it.
    pub fn new(path: PathBuf) -> LocalDir {
        LocalDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<output>.rejected`, where a run stopped by the reject gate leaves its rejects.
    pub fn review(&self) -> LocalDir {
        LocalDir { path: self.sibling("rejected") }
    }

    /// Every path a run of this output creates, replaces or removes: the output, its review
    /// directory, the lock, and the staging and set-aside directories named by process id
    /// (`.<name>.tmp-*`, `.<name>.old-*`, `.<name>.rejected.tmp-*`, `.<name>.rejected.old-*`),
    /// which [`OutputStore::clean_stale`] removes after a killed run.
    pub fn owned_paths(&self) -> Vec<guard::Written> {
        let w = |what, path, prefix| guard::Written { what, path, prefix };
        vec![
            w("output", self.path.clone(), false),
            w("review directory", self.sibling("rejected"), false),
            w("lock", self.sibling("lock"), false),
            w("temporary directory", self.sibling("tmp-"), true),
            w("set-aside directory", self.sibling("old-"), true),
            w("temporary review directory", self.sibling("rejected.tmp-"), true),
            w("set-aside review directory", self.sibling("rejected.old-"), true),
        ]
    }

    /// A directory and file-name prefix for the run's scratch files (the usage_id check's
    /// spill), removed with the staging directories after a killed run; None when the
    /// output's parent does not exist yet.
    pub fn scratch(&self) -> Option<(PathBuf, String)> {
        let p = self.sibling(&format!("tmp-dedupe-{}-", std::process::id()));
        let dir = p.parent().filter(|d| d.is_dir())?.to_path_buf();
        Some((dir, p.file_name()?.to_string_lossy().into_owned()))
    }

    /// `<parent>/.<name>.<suffix>` beside the output (`<parent>/<name>.rejected` for the review).
    fn sibling(&self, suffix: &str) -> PathBuf {
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
        let parent = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if suffix == "rejected" {
            parent.join(format!("{name}.rejected"))
        } else {
            parent.join(format!(".{name}.{suffix}"))
        }
    }
}

impl OutputStore for LocalDir {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn lock(&self) -> Result<Box<dyn std::any::Any>> {
        let path = self.sibling("lock");
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
            Ok(()) => Ok(Box::new(f)),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::Busy(self.path.clone())),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(format!("locking {}", path.display()), e)),
        }
    }

    fn exists(&self) -> bool {
        self.path.exists()
    }

    fn check_replaceable(&self) -> Result<()> {
        guard::check_replaceable(&self.path, crate::products::MANIFEST)
    }

    fn clean_stale(&self) {
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let parent = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let Ok(rd) = std::fs::read_dir(parent) else { return };
        for e in rd.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if f.starts_with(&format!(".{name}.tmp-")) || f.starts_with(&format!(".{name}.old-")) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    fn stage(&self) -> Result<PathBuf> {
        let p = self.sibling(&format!("tmp-{}", std::process::id()));
        if p.exists() {
            std::fs::remove_dir_all(&p).map_err(|e| Error::io(format!("removing {}", p.display()), e))?;
        }
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        std::fs::create_dir(&p).map_err(|e| Error::io(format!("creating {}", p.display()), e))?;
        Ok(p)
    }

    fn publish(&self, staged: &Path) -> Result<()> {
        let target = &self.path;
        if target.exists() {
            let old = self.sibling(&format!("old-{}", std::process::id()));
            std::fs::rename(target, &old).map_err(|e| Error::io(format!("moving aside {}", target.display()), e))?;
            std::fs::rename(staged, target).map_err(|e| Error::io(format!("publishing {}", target.display()), e))?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(staged, target).map_err(|e| Error::io(format!("publishing {}", target.display()), e))?;
        }
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(parent) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    fn discard(&self, staged: &Path) {
        let _ = std::fs::remove_dir_all(staged);
    }
}
