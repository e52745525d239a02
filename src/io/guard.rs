//! What a command may overwrite (issue 34): an output never overlaps an input, and `--force`
//! replaces only a previous billrun output.
//!
//! Every path is resolved to a canonical absolute path before anything is read or written
//! (symlinks followed; a path that does not exist yet is resolved through its nearest
//! existing ancestor), so `out`, `./out/`, `../x/out` and a symlink to it are one path.
//! Two paths overlap when they are equal or one lies inside the other.

use crate::error::{Error, Result};
use std::path::{Component, Path, PathBuf};

/// `p` as a canonical absolute path, whether or not it exists: its longest existing prefix
/// canonicalized (symlinks followed), the rest appended lexically (`..` pops, `.` is dropped).
pub fn resolve(p: &Path) -> Result<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map_err(|e| Error::io("reading the current directory", e))?.join(p)
    };
    // Walk down from the root while the prefix exists; canonicalize that prefix.
    let comps: Vec<Component> = abs.components().collect();
    let mut existing = comps.len();
    while existing > 0 {
        let prefix: PathBuf = comps[..existing].iter().collect();
        if std::fs::symlink_metadata(&prefix).is_ok() {
            break;
        }
        existing -= 1;
    }
    let prefix: PathBuf = comps[..existing].iter().collect();
    let mut out = if existing == 0 {
        PathBuf::from("/")
    } else {
        // A dangling symlink exists but does not canonicalize: keep it as written.
        std::fs::canonicalize(&prefix).unwrap_or(prefix)
    };
    for c in &comps[existing..] {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

/// `p` with its parent resolved and its own name kept (a symlink named as an output is
/// replaced itself, not its target); `.` and `..` resolve whole, so the path always ends in
/// a name to put temporary files beside.
pub fn resolve_parent(p: &Path) -> Result<PathBuf> {
    match (p.parent(), p.components().next_back()) {
        (Some(parent), Some(Component::Normal(name))) => Ok(resolve(parent)?.join(name)),
        _ => resolve(p),
    }
}

/// An input a command reads: its role (the flag that named it) and its path.
pub struct Input<'a> {
    pub role: &'static str,
    pub path: &'a Path,
}

/// A path a command creates, replaces or removes.
pub struct Written {
    /// What it is, for the message (`output`, `lock`, ...).
    pub what: &'static str,
    pub path: PathBuf,
    /// The path's file name is a prefix: every sibling whose name starts with it is the
    /// command's (temporary files named by process id, removed after a killed run).
    pub prefix: bool,
}

/// Refuse (exit 2) any `written` path that is an input, contains one or lies inside one.
/// `written` lists every path the command creates, replaces or removes (the output and the
/// files it keeps beside it: lock, temporary and review directories).
pub fn check_disjoint(written: &[Written], inputs: &[Input]) -> Result<()> {
    let inputs: Vec<(&str, &Path, PathBuf)> =
        inputs.iter().map(|i| Ok((i.role, i.path, resolve(i.path)?))).collect::<Result<_>>()?;
    for w in written {
        let rw = resolve(&w.path)?;
        for (role, given, ri) in &inputs {
            let how = if rw == *ri {
                "is"
            } else if ri.starts_with(&rw) {
                "contains"
            } else if rw.starts_with(ri) {
                "lies inside"
            } else if w.prefix && is_prefixed_sibling(&rw, ri) {
                "would remove"
            } else {
                continue;
            };
            return Err(Error::Overlap(format!(
                "{} {} ({}) {how} the input {role} {} ({}); refused, nothing read or written",
                w.what,
                w.path.display(),
                rw.display(),
                given.display(),
                ri.display()
            )));
        }
    }
    Ok(())
}

/// `other` (or a path inside it) is a sibling of `pattern` whose name starts with its name.
fn is_prefixed_sibling(pattern: &Path, other: &Path) -> bool {
    let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name()) else { return false };
    let Ok(rest) = other.strip_prefix(dir) else { return false };
    rest.components().next().is_some_and(|c| c.as_os_str().as_encoded_bytes().starts_with(name.as_encoded_bytes()))
}

/// A directory `--force` may replace: absent, empty, or holding `marker` (a previous
/// billrun output: its `run_manifest.json`). Anything else is refused (exit 4) naming the
/// entry that makes it foreign, so `--force` on a home directory or a data lake root does
/// nothing.
pub fn check_replaceable(dir: &Path, marker: &str) -> Result<()> {
    if dir.join(marker).is_file() {
        return Ok(());
    }
    check_only_own(dir, &[])
}

/// A directory a command may write its known files into, replacing them: absent, empty, or
/// holding nothing but names from `own` (`generate --out`, whose dataset has no manifest).
pub fn check_only_own(dir: &Path, own: &[&str]) -> Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) if dir.exists() => {
            return Err(Error::NotAnOutput { dir: dir.to_path_buf(), foreign: dir.to_path_buf() });
        }
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    };
    let mut foreign: Vec<PathBuf> = rd
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?
        .into_iter()
        .filter(|p| !p.file_name().is_some_and(|n| own.iter().any(|o| n == *o)))
        .collect();
    foreign.sort();
    match foreign.into_iter().next() {
        None => Ok(()),
        Some(f) => Err(Error::NotAnOutput { dir: dir.to_path_buf(), foreign: f }),
    }
}

/// A file a command may overwrite: absent, or one whose first bytes hold `marker` (a file
/// it wrote before, e.g. `report --html`'s page).
#[cfg(feature = "report")]
pub fn check_file_replaceable(file: &Path, marker: &str) -> Result<()> {
    use std::io::Read;
    let mut f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => return Err(Error::NotAnOutput { dir: file.to_path_buf(), foreign: file.to_path_buf() }),
    };
    let mut head = Vec::new();
    let ok = f.metadata().is_ok_and(|m| m.is_file())
        && (&mut f).take(1024).read_to_end(&mut head).is_ok()
        && String::from_utf8_lossy(&head).contains(marker);
    if ok {
        Ok(())
    } else {
        Err(Error::NotAnOutput { dir: file.to_path_buf(), foreign: file.to_path_buf() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_follows_symlinks_and_normalizes_missing_tails() {
        let t = tempfile::tempdir().unwrap();
        let real = resolve(t.path()).unwrap();
        std::fs::create_dir(real.join("data")).unwrap();
        std::os::unix::fs::symlink(real.join("data"), real.join("link")).unwrap();
        assert_eq!(resolve(&real.join("link")).unwrap(), real.join("data"));
        assert_eq!(resolve(&real.join("link/./new/../x")).unwrap(), real.join("data/x"));
        assert_eq!(resolve(&real.join("nope/a/../b")).unwrap(), real.join("nope/b"));
    }

    #[test]
    fn overlap_is_by_whole_components() {
        let t = tempfile::tempdir().unwrap();
        let root = resolve(t.path()).unwrap();
        let refused = |w: &str, prefix: bool, input: &str| {
            let written = [Written { what: "output", path: root.join(w), prefix }];
            check_disjoint(&written, &[Input { role: "--state", path: &root.join(input) }]).is_err()
        };
        assert!(refused("a/b", false, "a/b"));
        assert!(refused("a", false, "a/b/c"));
        assert!(refused("a/b/c", false, "a"));
        assert!(!refused("a/bc", false, "a/b"));
        assert!(!refused("a/b", false, "a/bc"));
        assert!(!refused("a/b", false, "a/c"));
        assert!(refused("a/.out.tmp-", true, "a/.out.tmp-7/usage.csv"));
        assert!(!refused("a/.out.tmp-", true, "a/out/usage.csv"));
    }

    #[test]
    fn only_an_empty_directory_or_a_marked_one_is_replaceable() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("out");
        assert!(check_replaceable(&d, "run_manifest.json").is_ok());
        std::fs::create_dir(&d).unwrap();
        assert!(check_replaceable(&d, "run_manifest.json").is_ok());
        std::fs::write(d.join("notes.txt"), "mine").unwrap();
        match check_replaceable(&d, "run_manifest.json") {
            Err(Error::NotAnOutput { foreign, .. }) => assert_eq!(foreign, d.join("notes.txt")),
            other => panic!("{other:?}"),
        }
        std::fs::write(d.join("run_manifest.json"), "{}").unwrap();
        assert!(check_replaceable(&d, "run_manifest.json").is_ok());
    }
}
