//! SPEC §10.2: object storage. Every path argument may be a URL — `s3://`, `gs://`, `az://`
//! (also `abfs://`, `abfss://`), credentials and endpoints from each cloud's usual
//! environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`), or `file://` — through the
//! `object_store` crate.
//!
//! A prefix is read by copying its objects to a local directory, and a run's output is
//! written locally and then uploaded: every file first, `run_manifest.json` last, so a run
//! is published exactly when its manifest exists (there is no rename on an object store).
//! Before a run uploads, whatever a killed run left under the prefix is removed; with
//! `--force`, the previous run's manifest goes first, so no reader ever takes a mix of two
//! runs for one.

use crate::error::{Error, Result};
use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The URL schemes billrun reads and writes through `object_store`.
const SCHEMES: [&str; 6] = ["s3://", "gs://", "az://", "abfs://", "abfss://", "file://"];

/// Whether a path argument names an object-store prefix (rather than a local path).
pub fn is_url(p: &Path) -> bool {
    let s = p.to_string_lossy();
    SCHEMES.iter().any(|k| s.starts_with(k))
}

/// An object-store prefix.
pub struct Prefix {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    rt: tokio::runtime::Runtime,
}

fn store_err(url: &str, e: impl std::fmt::Display) -> Error {
    Error::Input {
        file: url.to_string(),
        column: None,
        row: None,
        message: format!("object store: {e} (check the credentials, the endpoint and that the bucket exists)"),
    }
}

impl Prefix {
    /// Open `url` (see the module's schemes), configured from the environment.
    pub fn open(url: &Path) -> Result<Prefix> {
        let url = url.to_string_lossy().trim_end_matches('/').to_string();
        let (scheme, rest) = url.split_once("://").ok_or_else(|| Error::Usage(format!("{url}: not a URL")))?;
        let (store, prefix): (Arc<dyn ObjectStore>, &str) = match scheme {
            "file" => (Arc::new(object_store::local::LocalFileSystem::new()), rest),
            _ => {
                let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
                let root = format!("{scheme}://{bucket}");
                let store: Arc<dyn ObjectStore> = match scheme {
                    "s3" => Arc::new(
                        object_store::aws::AmazonS3Builder::from_env()
                            .with_url(&root)
                            .build()
                            .map_err(|e| store_err(&url, e))?,
                    ),
                    "gs" => Arc::new(
                        object_store::gcp::GoogleCloudStorageBuilder::from_env()
                            .with_url(&root)
                            .build()
                            .map_err(|e| store_err(&url, e))?,
                    ),
                    _ => Arc::new(
                        object_store::azure::MicrosoftAzureBuilder::from_env()
                            .with_url(&root)
                            .build()
                            .map_err(|e| store_err(&url, e))?,
                    ),
                };
                (store, path)
            }
        };
        let prefix = ObjectPath::parse(prefix).map_err(|e| store_err(&url, e))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("an async runtime for the object store: {e}")))?;
        Ok(Prefix { url, store, prefix, rt })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn child(&self, rel: &str) -> ObjectPath {
        rel.split('/').filter(|p| !p.is_empty()).fold(self.prefix.clone(), |p, part| p.join(part))
    }

    /// Every object under the prefix, as paths relative to it.
    pub fn list(&self) -> Result<Vec<String>> {
        let base = self.prefix.as_ref().to_string();
        let metas: Vec<object_store::ObjectMeta> =
            self.rt.block_on(self.store.list(Some(&self.prefix)).try_collect()).map_err(|e| store_err(&self.url, e))?;
        let mut out: Vec<String> = metas
            .into_iter()
            .map(|m| {
                let full = m.location.as_ref().to_string();
                full.strip_prefix(&base).unwrap_or(&full).trim_start_matches('/').to_string()
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// The object `rel` under the prefix, if it exists.
    pub fn get(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let loc = self.child(rel);
        let r = self.rt.block_on(async {
            match self.store.get(&loc).await {
                Ok(g) => g.bytes().await.map(|b| Some(b.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        r.map_err(|e| store_err(&self.url, e))
    }

    /// Copy every object under the prefix whose relative path starts with `only` (all when
    /// empty) into `to`, keeping the relative paths; returns how many.
    pub fn download(&self, to: &Path, only: &str) -> Result<usize> {
        self.download_listed(to, only, self.list()?)
    }

    /// [`Prefix::download`] of the objects `listed` (relative paths, as [`Prefix::list`]).
    fn download_listed(&self, to: &Path, only: &str, listed: Vec<String>) -> Result<usize> {
        let mut n = 0;
        for rel in listed.into_iter().filter(|r| r.starts_with(only)) {
            let bytes = self.get(&rel)?.ok_or_else(|| store_err(&self.url, format!("{rel} vanished while read")))?;
            let dest = to.join(rel.strip_prefix(only).unwrap_or(&rel).trim_start_matches('/'));
            if let Some(d) = dest.parent() {
                std::fs::create_dir_all(d).map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
            }
            std::fs::write(&dest, bytes).map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
            n += 1;
        }
        Ok(n)
    }

    fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        let loc = self.child(rel);
        self.rt.block_on(self.store.put(&loc, PutPayload::from(bytes))).map(drop).map_err(|e| store_err(&self.url, e))
    }

    fn delete(&self, rel: &str) -> Result<()> {
        let loc = self.child(rel);
        match self.rt.block_on(self.store.delete(&loc)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(&self.url, e)),
        }
    }

    /// Publish the local run directory `from` under the prefix (SPEC §10.2): the previous
    /// run's manifest removed first (a run there is replaced only with `force`), then every
    /// other object under the prefix (a killed run's files), then every file of `from` but the
    /// manifest, and the manifest last.
    pub fn publish(&self, from: &Path, force: bool) -> Result<()> {
        const MANIFEST: &str = crate::products::MANIFEST;
        if self.get(MANIFEST)?.is_some() {
            if !force {
                return Err(Error::OutputExists(PathBuf::from(&self.url)));
            }
            self.delete(MANIFEST)?;
        }
        // Without a manifest, what is there may only be a killed run's files (or nothing):
        // anything else is not billrun's to delete (exit 4, as for a local directory).
        let existing = self.list()?;
        if let Some(foreign) = existing.iter().find(|r| !is_run_file(r)) {
            return Err(Error::NotAnOutput {
                dir: PathBuf::from(&self.url),
                foreign: PathBuf::from(format!("{}/{foreign}", self.url)),
            });
        }
        for rel in existing {
            self.delete(&rel)?;
        }
        let mut files = super::files_under(from)?;
        // `wallet_transactions` first: a prefix holding some of a run's files without its
        // manifest then always holds it, and readers refuse it as a killed run's.
        files.sort_by_key(|r| (!r.starts_with("wallet_transactions"), r.clone()));
        files.retain(|r| r.as_str() != MANIFEST);
        self.put_files(from, &files)?;
        self.put_files(from, &[MANIFEST.to_string()])
    }

    /// Refuse an output prefix holding a run (unless `force`): checked before a run starts.
    pub fn check_output(&self, force: bool) -> Result<()> {
        if !force && self.get(crate::products::MANIFEST)?.is_some() {
            return Err(Error::OutputExists(PathBuf::from(&self.url)));
        }
        Ok(())
    }
}

impl Prefix {
    /// Upload every file under `from` below the prefix (the `shard` command's parts).
    pub fn upload_tree(&self, from: &Path) -> Result<usize> {
        let files = super::files_under(from)?;
        self.put_files(from, &files)?;
        Ok(files.len())
    }

    /// Upload the files `rels` (relative to `from`) below the prefix, in order.
    fn put_files(&self, from: &Path, rels: &[String]) -> Result<()> {
        for rel in rels {
            let bytes = std::fs::read(from.join(rel)).map_err(|e| Error::io(format!("reading {rel}"), e))?;
            self.put(rel, bytes)?;
        }
        Ok(())
    }
}

/// A local copy of an input named by a URL: one object (a table file, a job file) or a
/// prefix of part files, kept under its own name in a temporary directory (so the run's
/// manifest names its files as for a local input).
pub fn fetch_input(url: &Path) -> Result<(tempfile::TempDir, PathBuf)> {
    let p = Prefix::open(url)?;
    let name = p.url().rsplit('/').next().unwrap_or("input").to_string();
    let tmp = tempfile::Builder::new()
        .prefix("billrun-fetch-")
        .tempdir()
        .map_err(|e| Error::io("creating a temporary directory", e))?;
    let local = tmp.path().join(&name);
    if let Some(bytes) = p.get("")? {
        std::fs::write(&local, bytes).map_err(|e| Error::io(format!("writing {}", local.display()), e))?;
    } else if p.download(&local, "")? == 0 {
        return Err(store_err(p.url(), "no such object or prefix"));
    }
    Ok((tmp, local))
}

/// The tables and files a run (or a merge) writes: an object under an output prefix whose
/// first path segment is none of these is not a killed run's, and is never deleted.
const RUN_FILES: [&str; 18] = [
    "services",
    "wallets",
    "subscriptions",
    "subscription_items",
    "deferred_usage",
    "deferred_events",
    "wallet_transactions",
    "disconnections",
    "reconnections",
    "wallet_estimates",
    "external_payments",
    "rejects",
    "usage_lineage",
    "price_tiers",
    "discounts",
    "tax_rates",
    "run_manifest",
    "run_stats",
];

fn is_run_file(rel: &str) -> bool {
    let first = rel.split('/').next().unwrap_or_default();
    let stem =
        first.strip_suffix(".parquet").or_else(|| first.strip_suffix(".csv")).or_else(|| first.strip_suffix(".json"));
    RUN_FILES.contains(&stem.unwrap_or(first)) || first.starts_with("shard=")
}

/// Whether object-store URLs `a` and `b` overlap: equal, or one a path prefix of the other.
pub fn urls_overlap(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_end_matches('/'), b.trim_end_matches('/'));
    a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
}

/// A readable copy of a run or state prefix in a local temporary directory (SPEC §10.2:
/// readers refuse a prefix holding a run's files without its manifest: a killed run).
/// `need_manifest`: the prefix must hold a published run (`verify`, `report`, `merge`).
/// `shard`: of a merged run, only `shard=I/` is copied.
pub fn fetch(url: &Path, need_manifest: bool, shard: Option<u32>) -> Result<(tempfile::TempDir, PathBuf)> {
    let p = Prefix::open(url)?;
    let manifest = p.get(crate::products::MANIFEST)?;
    let objects = p.list()?;
    if manifest.is_none() {
        let looks_like_run = objects.iter().any(|o| o.starts_with("wallet_transactions"));
        if need_manifest || looks_like_run {
            return Err(Error::Input {
                file: p.url().to_string(),
                column: None,
                row: None,
                message: "no run_manifest.json under this prefix: not a published run (a killed run's files are \
                          not a run); refused"
                    .into(),
            });
        }
        if objects.is_empty() {
            return Err(store_err(p.url(), "nothing under this prefix"));
        }
    }
    let merged = manifest
        .as_ref()
        .and_then(|m| serde_json::from_slice::<serde_json::Value>(m).ok())
        .is_some_and(|m| m.get("shards").is_some());
    let tmp = tempfile::Builder::new()
        .prefix("billrun-fetch-")
        .tempdir()
        .map_err(|e| Error::io("creating a temporary directory", e))?;
    let dir = tmp.path().join("data");
    let only = match (merged, shard) {
        (true, Some(i)) => format!("shard={i}/"),
        _ => String::new(),
    };
    p.download_listed(&dir, &only, objects)?;
    Ok((tmp, dir))
}
