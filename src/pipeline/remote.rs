//! SPEC §10.2 at the edges of the commands: path arguments that are object-store URLs are
//! copied to local temporary directories before a command runs, and a run's (or a merge's,
//! or a split's) output named by a URL is written locally and then published under it,
//! manifest last ([`crate::io::object`]).

use super::{execute, RunArgs, RunReport};
use crate::error::Result;
use crate::io::object::{fetch, fetch_input, is_url, Prefix};
use std::path::{Path, PathBuf};

/// Temporary local copies, removed when dropped.
#[derive(Default)]
pub struct Fetched(Vec<tempfile::TempDir>);

impl Fetched {
    /// `p` itself, or a local copy of the input it names.
    pub fn input(&mut self, p: &Path) -> Result<PathBuf> {
        if !is_url(p) {
            return Ok(p.to_path_buf());
        }
        let (tmp, local) = fetch_input(p)?;
        self.0.push(tmp);
        Ok(local)
    }

    /// A published run (or a state) at `p`, local; `need_manifest` for a run's readers;
    /// `shard`: of a merged run, that shard only.
    pub fn run_dir(&mut self, p: &Path, need_manifest: bool, shard: Option<u32>) -> Result<PathBuf> {
        if !is_url(p) {
            return Ok(p.to_path_buf());
        }
        let (tmp, local) = fetch(p, need_manifest, shard)?;
        self.0.push(tmp);
        Ok(local)
    }

    /// A local directory for an output that `p` names (a temporary one for a URL).
    pub fn output(&mut self, p: &Path) -> Result<PathBuf> {
        if !is_url(p) {
            return Ok(p.to_path_buf());
        }
        let tmp = tempfile::Builder::new()
            .prefix("billrun-out-")
            .tempdir()
            .map_err(|e| crate::Error::io("creating a temporary directory", e))?;
        let local = tmp.path().join("out");
        self.0.push(tmp);
        Ok(local)
    }
}

/// `text` (a command's report) with the temporary local copy `local` named as the argument
/// `given` (a URL) that the user gave.
pub fn as_given(text: &str, local: &Path, given: &Path) -> String {
    if local == given {
        return text.to_string();
    }
    text.replace(&*local.to_string_lossy(), &given.to_string_lossy())
}

/// [`execute`] with any of its paths an object-store URL.
pub fn execute_anywhere(args: &RunArgs, progress: crate::progress::SharedProgress) -> Result<RunReport> {
    let mut f = Fetched::default();
    // An output URL never overlaps an input URL (issue 34's rule, on the store).
    if let Some(o) = args.output.as_deref().filter(|o| is_url(o)) {
        let out = o.to_string_lossy();
        let inputs =
            [Some(&args.job), Some(&args.state), args.usage.as_ref(), args.credits.as_ref(), args.events.as_ref()];
        for i in inputs.into_iter().flatten().filter(|i| is_url(i)) {
            if crate::io::object::urls_overlap(&out, &i.to_string_lossy()) {
                return Err(crate::Error::Overlap(format!(
                    "--output {out} overlaps the input {}: refused, nothing read or written",
                    i.display()
                )));
            }
        }
    }
    let remote_out = match &args.output {
        Some(o) if is_url(o) => {
            let p = Prefix::open(o)?;
            if args.mode == super::Mode::Run {
                p.check_output(args.force)?;
            }
            Some((p, f.output(o)?))
        }
        _ => None,
    };
    let local = RunArgs {
        job: f.input(&args.job)?,
        state: f.run_dir(&args.state, false, args.shard.map(|s| s.index))?,
        usage: args.usage.as_deref().map(|p| f.input(p)).transpose()?,
        credits: args.credits.as_deref().map(|p| f.input(p)).transpose()?,
        events: args.events.as_deref().map(|p| f.input(p)).transpose()?,
        output: match &remote_out {
            Some((_, local)) => Some(local.clone()),
            None => args.output.clone(),
        },
        ..args.clone()
    };
    let mut report = match execute(&local, progress) {
        // Stopped by the reject gate: its rejects and manifest go to `<output>.rejected/`
        // under the store too (the local copy is temporary).
        Err(crate::Error::TooManyRejects { rejected, total, ratio, max, summary, .. })
            if remote_out.is_some() && args.mode == super::Mode::Run =>
        {
            let (prefix, local_out) = remote_out.as_ref().expect("matched above");
            let review_url = format!("{}.rejected", prefix.url());
            let local_review = crate::io::storage::LocalDir::new(local_out.clone()).review();
            Prefix::open(Path::new(&review_url))?.publish(local_review.path(), true)?;
            return Err(crate::Error::TooManyRejects { rejected, total, ratio, max, review_dir: review_url, summary });
        }
        r => r?,
    };
    if let (Some((prefix, local_out)), Some(_)) = (&remote_out, &report.published) {
        prefix.publish(local_out, args.force)?;
        report.published = Some(PathBuf::from(prefix.url()));
    }
    Ok(report)
}
