//! What a run may overwrite and what it must not (issue 34, docs/RELIABILITY.md): its inputs
//! by the flags that name them, checked against the paths its output store writes. The
//! publish protocol itself is the store's (`io::storage`).

use super::RunArgs;
use crate::io::guard;

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
