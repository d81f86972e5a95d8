//! Output paths, checked before the work that fills them.

use std::path::Path;

use anyhow::{Result, bail};

/// Fails unless `path` (given as `flag`) can be created as a file: its folder exists and it is not
/// itself a folder. Called before a long run, so a typo costs nothing.
pub fn check_file(path: &Path, flag: &str) -> Result<()> {
    if path.is_dir() {
        bail!("{flag} {}: is a folder; give a file name", path.display());
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!(
            "{flag} {}: the folder {} does not exist",
            path.display(),
            parent.display()
        );
    }
    Ok(())
}
